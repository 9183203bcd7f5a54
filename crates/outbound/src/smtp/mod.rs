//! The SMTP transport: our own async client on `smtp-proto` (reply and EHLO parsing) and
//! `tokio-rustls`, with pipelining, pooled connections, per-phase timeouts and SASL for
//! passwords and OAuth2.
//!
//! Why not an existing client: lettre does not pipeline, its pool has no connection cap, its
//! async timeouts cover only the connect, it logs AUTH lines at debug level, and its
//! credentials are fixed when the transport is built (an OAuth2 token dies within 90 minutes).
//!
//! The modules, one concern each:
//! - [`tls`](TlsMode): the four TLS modes and certificate verification;
//! - `session`: one session by phase (opening, AUTH, transaction), each step consuming the
//!   session and giving it back only while its connection is usable;
//! - `verdict`: what a failure means for each message, from what the server may have received
//!   of it: safe to resend, or [`Ambiguous`](crate::ErrorKind::Ambiguous);
//! - `lane`: one connection's task, a typed state machine that pipelines the messages queued
//!   on it;
//! - `pool`: connection reuse under a hard cap on open connections, the one gate every
//!   connection opens through ([`crate::limits::ConnectionSlots`]);
//! - `auth`: credentials and SASL PLAIN, LOGIN, XOAUTH2, OAUTHBEARER ([`Credentials`],
//!   [`AccessTokenSource`]);
//! - `reply`: server replies to [`ErrorKind`](crate::ErrorKind)s;
//! - `ehlo`: the EHLO name; `wire`: command lines, dot-stuffing, [`WireStats`].
//!
//! Configuration from environment variables and DSNs is not here: it lives in
//! `config::smtp`, which drives [`SmtpTransportBuilder`].
//!
//! ```no_run
//! use std::time::Duration;
//! use outbound::{Message, Transport};
//! use outbound::smtp::{Credentials, SmtpTransport, TlsMode};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), outbound::Error> {
//! let transport = SmtpTransport::builder("smtp.example.com")
//!     .tls(TlsMode::StartTls) // port 587 by default
//!     .credentials(Credentials::password("app@example.com", "app-password"))
//!     .timeout(Duration::from_secs(20))
//!     .build()?;
//! transport.verify().await?; // connect, TLS, EHLO, AUTH, QUIT
//! let msg = Message::builder()
//!     .from("app@example.com")
//!     .to("ada@example.com")
//!     .subject("Welcome")
//!     .text("Hello!")
//!     .build()?;
//! let receipt = transport.send(&msg).await?;
//! println!("queued as {:?}", receipt.provider_id);
//! # Ok(()) }
//! ```

mod auth;
mod ehlo;
mod lane;
mod pinning;
mod pool;
mod reply;
mod session;
mod tls;
mod verdict;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_rustls::TlsConnector;

pub use auth::{AccessTokenSource, Credentials, Mechanism};
pub use session::Timeouts;
pub use tls::TlsMode;
pub use wire::WireStats;

use lane::{Job, Outcome};
use pool::{Assignment, Pool, PoolOptions};
use session::{ConnectParams, Session};
use wire::Counters;

use crate::limits::{ConnectionLease, ConnectionSlots};
use crate::message::PreparedMessage;
use crate::{Error, Receipt, Transport};

/// Default connection cap: Exchange Online's limit of concurrent connections per mailbox.
pub const DEFAULT_POOL_SIZE: usize = 3;
/// Default number of messages sent over one connection before it is replaced.
pub const DEFAULT_MAX_MESSAGES_PER_CONNECTION: u32 = 100;
/// Default time an unused pooled connection is kept open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends mail over SMTP. Cheap to clone (clones share the pool); see the
/// [module documentation](self) for an example.
///
/// `Debug` and [`Transport::describe`] never show a password or token.
#[derive(Clone)]
pub struct SmtpTransport {
    // Crate-visible so the configuration's tests can check what settings became.
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) params: Arc<ConnectParams>,
    pub(crate) pool: Arc<Pool>,
    counters: Arc<Counters>,
    pub(crate) tls_verify: bool,
}

impl SmtpTransport {
    /// Starts building a transport for `host` (a name or an IP address). Defaults: STARTTLS
    /// required on port 587, certificates verified, no authentication, 30 s per phase,
    /// at most 3 connections, 100 messages per connection, 30 s idle expiry, pipelining on.
    pub fn builder(host: impl Into<String>) -> SmtpTransportBuilder {
        SmtpTransportBuilder::new(host.into())
    }

    /// The server's host.
    pub fn host(&self) -> &str {
        &self.inner.params.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.inner.params.port
    }

    /// The TLS mode.
    pub fn tls_mode(&self) -> TlsMode {
        self.inner.params.tls_mode
    }

    /// How the network was used so far (connections, pipelining).
    pub fn stats(&self) -> WireStats {
        self.inner.counters.snapshot()
    }

    /// Opens a connection for `job` with `lease` (from the pool's gate) and starts its lane.
    async fn open_lane(&self, lease: ConnectionLease, job: Job) -> Result<(), Error> {
        let session = self.connect(lease).await?;
        self.inner.pool.start_lane(session, job);
        Ok(())
    }

    async fn connect(&self, lease: ConnectionLease) -> Result<Session, Error> {
        let pool = &self.inner.pool;
        let mut session = Session::open(
            self.inner.params.clone(),
            self.inner.counters.clone(),
            &|| pool.next_id(),
        )
        .await?;
        session.lease = Some(lease);
        Ok(session)
    }

    /// Queues `message` on a connection (opening one when the pool says so) and waits for
    /// what became of it.
    async fn run_on_a_lane(
        &self,
        message: &PreparedMessage,
        size: usize,
        eight_bit: bool,
    ) -> Result<Outcome, Error> {
        let (job, outcome) = Job::new(message.clone(), size, eight_bit);
        if let Assignment::Open(lease, job) = self.inner.pool.assign(job).await? {
            self.open_lane(lease, job).await?;
        }
        // No answer: the connection's task ended without one (its runtime shut down).
        outcome.await.map_err(|_| verdict::no_answer())
    }

    /// The receipt of `message`, delivered on connection `conn` as `delivery` says.
    fn receipt(
        &self,
        message: &PreparedMessage,
        delivery: session::Delivery,
        reused: bool,
        attempts: u32,
        conn: u64,
    ) -> Receipt {
        let counters = &self.inner.counters;
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        if reused {
            counters.reused_connections.fetch_add(1, Ordering::Relaxed);
        }
        let mut receipt = Receipt::new("smtp", message.message_id(), delivery.accepted)
            .with_rejected(delivery.rejected);
        if let Some(id) = reply::provider_id(&delivery.reply) {
            receipt = receipt.with_provider_id(id);
        }
        receipt.attempts = attempts;
        tracing::debug!(
            conn,
            message_id = %receipt.message_id,
            provider_id = ?receipt.provider_id,
            accepted = receipt.accepted.len(),
            rejected = receipt.rejected.len(),
            "message accepted"
        );
        receipt
    }
}

/// How often one send may find its connection closing before it started (each time it goes
/// to another connection, which is not an attempt) before giving up.
const MAX_REROUTES: u32 = 8;

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.inner.params;
        let opts = self.inner.pool.options();
        f.debug_struct("SmtpTransport")
            .field("host", &p.host)
            .field("port", &p.port)
            .field("tls", &p.tls_mode)
            .field("tls_verify", &self.inner.tls_verify)
            .field("credentials", &p.credentials)
            .field("mechanism", &p.mechanism)
            .field("ehlo_name", &p.ehlo_name)
            .field("timeouts", &p.timeouts)
            .field("pipelining", &p.pipelining)
            .field("chunking", &p.chunking)
            .field("pool_size", &opts.size)
            .field("max_messages_per_connection", &opts.max_messages)
            .field("idle_timeout", &opts.idle_timeout)
            .finish()
    }
}

#[async_trait]
impl Transport for SmtpTransport {
    /// Sends over a pooled connection, queued behind other sends on it when every connection
    /// is busy and the cap is reached (then its commands are pipelined behind the previous
    /// message's final `.`). An idle connection that turns out to be broken before the end of
    /// DATA is replaced once, transparently (the message is not lost and cannot be
    /// duplicated); a failure after the end of DATA is
    /// [`ErrorKind::Ambiguous`](crate::ErrorKind::Ambiguous) and is never retried here.
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let rendered = message.rendered()?;
        let (size, eight_bit) = (rendered.len(), !rendered.is_ascii());
        let mut attempts = 0u32;
        let mut reroutes = 0u32;
        loop {
            let done = match self.run_on_a_lane(message, size, eight_bit).await? {
                Outcome::Done(done) => done,
                Outcome::NotStarted => {
                    reroutes += 1;
                    if reroutes > MAX_REROUTES {
                        return Err(verdict::kept_closing(&self.inner.params.host));
                    }
                    continue;
                }
            };
            attempts += 1;
            let conn = done.conn;
            match done.result {
                Ok(delivery) => {
                    return Ok(self.receipt(message, delivery, done.reused, attempts, conn));
                }
                Err(err) if done.replaceable && attempts == 1 => {
                    // The pooled connection died (while idle, or under the message pipelined
                    // before this one) and it showed only now, before this message's end of
                    // DATA: nothing was delivered.
                    self.inner
                        .counters
                        .broken_connections_replaced
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        conn,
                        error = %err,
                        "a pooled connection was broken; sending on another connection"
                    );
                }
                Err(err) => {
                    tracing::debug!(conn, error = %err, "send failed");
                    return Err(err);
                }
            }
        }
    }

    /// Connects, sets up TLS, says EHLO, authenticates when credentials are configured, and
    /// says QUIT. Sends nothing. Always uses a new connection (and counts against the cap).
    async fn verify(&self) -> Result<(), Error> {
        // A new connection while idle ones exist would exceed the cap: one is closed first.
        let lease = self.inner.pool.exclusive_lease().await?;
        let session = self.connect(lease).await?;
        tracing::debug!(conn = session.id(), "verified; closing");
        session.quit().await;
        Ok(())
    }

    /// Closes every pooled connection politely (QUIT), after the messages queued on them.
    /// The transport stays usable: later sends open new connections.
    async fn close(&self) {
        self.inner.pool.close_all().await;
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }

    /// E.g. `smtp://smtp.example.com:587 (starttls, as app@example.com)`.
    fn describe(&self) -> String {
        let p = &self.inner.params;
        let mut extra = vec![p.tls_mode.to_string()];
        if let Some(c) = &p.credentials {
            extra.push(format!("as {}", c.username()));
        }
        if p.tls_mode.uses_tls() && !self.inner.tls_verify {
            extra.push("certificate verification off".into());
        }
        let host = if p.host.contains(':') && !p.host.starts_with('[') {
            format!("[{}]", p.host)
        } else {
            p.host.clone()
        };
        format!("smtp://{host}:{} ({})", p.port, extra.join(", "))
    }
}

/// Builds an [`SmtpTransport`]; nothing is checked until [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use outbound::smtp::{Mechanism, SmtpTransport, TlsMode, Credentials};
/// let t = SmtpTransport::builder("127.0.0.1")
///     .tls(TlsMode::Implicit)
///     .credentials(Credentials::password("alice@example.test", "pw"))
///     .mechanism(Mechanism::Login)
///     .pool_size(2)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(t.port(), 465);
/// assert_eq!(outbound::Transport::describe(&t), "smtp://127.0.0.1:465 (implicit, as alice@example.test)");
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SmtpTransportBuilder {
    host: String,
    port: Option<u16>,
    tls: TlsMode,
    tls_verify: bool,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    credentials: Option<Credentials>,
    mechanism: Option<Mechanism>,
    local_hostname: Option<String>,
    timeouts: Timeouts,
    pool_size: usize,
    max_messages: u32,
    idle_timeout: Duration,
    pipelining: bool,
    chunking: bool,
    connection_slots: Option<Arc<dyn ConnectionSlots>>,
}

impl SmtpTransportBuilder {
    fn new(host: String) -> Self {
        SmtpTransportBuilder {
            host,
            port: None,
            tls: TlsMode::StartTls,
            tls_verify: true,
            ca_file: None,
            tls_server_name: None,
            credentials: None,
            mechanism: None,
            local_hostname: None,
            timeouts: Timeouts::default(),
            pool_size: DEFAULT_POOL_SIZE,
            max_messages: DEFAULT_MAX_MESSAGES_PER_CONNECTION,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            pipelining: true,
            chunking: false,
            connection_slots: None,
        }
    }

    /// The port; by default the mode's ([`TlsMode::default_port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The TLS mode (default [`TlsMode::StartTls`], required).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }

    /// `true` accepts any certificate, unverified (logged as a warning when the transport is
    /// built). Dangerous: anyone on the network path can then impersonate the server and read
    /// the password. Only for test servers; trust a private CA with [`ca_file`](Self::ca_file)
    /// instead.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_verify = !accept;
        self
    }

    /// A PEM file of CA certificates trusted in addition to the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The name the certificate must match, when it differs from the host connected to.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// Authenticate with these credentials (none: no AUTH, for relays).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Use this SASL mechanism instead of choosing from what the server offers.
    pub fn mechanism(mut self, mechanism: Mechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// The EHLO name; empty means "choose" (see the `ehlo` rules: this
    /// host's FQDN, else an address literal).
    pub fn local_hostname(mut self, name: impl Into<String>) -> Self {
        self.local_hostname = Some(name.into());
        self
    }

    /// The same time limit for every phase.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeouts = Timeouts::all(limit);
        self
    }

    /// A time limit per phase.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The most connections open at once (default 3).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Messages per connection before it is replaced (default 100).
    pub fn max_messages_per_connection(mut self, n: u32) -> Self {
        self.max_messages = n;
        self
    }

    /// How long an unused connection is kept (default 30 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Whether to pipeline when the server offers PIPELINING (default true): MAIL, RCPT and
    /// DATA in one write, and on a busy pooled connection the next message's commands right
    /// behind the previous message's final `.`.
    pub fn pipelining(mut self, enabled: bool) -> Self {
        self.pipelining = enabled;
        self
    }

    /// Whether to send messages of up to 1 MiB with `BDAT n LAST` (RFC 3030) when the server
    /// offers CHUNKING and PIPELINING (default false): MAIL, RCPT, BDAT and the message go out
    /// in one write, so each message costs one round trip even when sent one at a time
    /// (without it, a busy pooled connection already costs one round trip per message, by
    /// pipelining; a single caller sending one message at a time pays two).
    ///
    /// When several sends are queued on a connection, up to 16 `BDAT` transactions are
    /// written before the oldest is answered (each behind another begins with RSET), and
    /// their replies are read in order, each by its own transaction: through a link with
    /// latency one connection then carries several messages per round trip, where DATA
    /// (which must wait for its 354) allows one.
    ///
    /// Why it is off by default: once the write is out the server holds the whole message, so
    /// a pooled connection that died silently while idle (a NAT or firewall dropped it) makes
    /// that message [`ErrorKind::Ambiguous`](crate::ErrorKind::Ambiguous) instead of being
    /// resent on a new connection (and so every transaction in flight when a connection is
    /// lost); and the message goes out
    /// even when every recipient is then refused.
    pub fn chunking(mut self, enabled: bool) -> Self {
        self.chunking = enabled;
        self
    }

    /// Shares the connection cap with other processes (e.g. through Redis, see
    /// [`crate::limits`]): a connection opens only with a slot from `slots`, held while it
    /// lives. The pool's own cap ([`pool_size`](Self::pool_size)) still holds in this process.
    pub fn connection_slots(mut self, slots: Arc<dyn ConnectionSlots>) -> Self {
        self.connection_slots = Some(slots);
        self
    }

    /// Checks everything and builds the transport (no network access happens here; the CA
    /// file and the system's roots are read).
    pub fn build(self) -> Result<SmtpTransport, Error> {
        let host = self.checked_host()?;
        let port = self.port.unwrap_or(self.tls.default_port());
        if port == 0 {
            return Err(Error::config("the SMTP port must be from 1 to 65535"));
        }
        let tls = self.tls_client(&host, port)?;
        if self.tls == TlsMode::None && self.credentials.is_some() {
            tracing::warn!(
                host = %host,
                port,
                "tls=none: credentials will be sent without encryption"
            );
        }
        let ehlo_name = self.ehlo_name()?;
        self.check_limits()?;
        let params = ConnectParams {
            host,
            port,
            tls_mode: self.tls,
            tls,
            credentials: self.credentials,
            mechanism: self.mechanism,
            ehlo_name,
            timeouts: self.timeouts,
            pipelining: self.pipelining,
            chunking: self.chunking,
        };
        let pool = Pool::new(
            PoolOptions {
                size: self.pool_size,
                max_messages: self.max_messages,
                idle_timeout: self.idle_timeout,
            },
            self.connection_slots,
        );
        Ok(SmtpTransport {
            inner: Arc::new(Inner {
                params: Arc::new(params),
                pool: Arc::new(pool),
                counters: Arc::new(Counters::default()),
                tls_verify: self.tls_verify,
            }),
        })
    }

    /// The host, trimmed, if it can be one.
    fn checked_host(&self) -> Result<String, Error> {
        let host = self.host.trim().to_string();
        if host.is_empty() {
            return Err(Error::config_for(
                "host",
                "`host` is empty; expected the SMTP server's host name or IP address",
            ));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(Error::config_for(
                "host",
                format!(
                    "`host` is `{host}`, which is not a host name; expected e.g. smtp.example.com"
                ),
            ));
        }
        Ok(host)
    }

    /// The TLS client and the name the certificate must match, when the mode may use TLS.
    fn tls_client(&self, host: &str, port: u16) -> Result<Option<TlsClient>, Error> {
        if !self.tls.uses_tls() {
            return Ok(None);
        }
        let extra = match &self.ca_file {
            Some(path) => {
                tls::load_ca_file(path, "`ca_file`").map_err(|e| e.for_setting("ca_file"))?
            }
            None => Vec::new(),
        };
        if !self.tls_verify {
            tracing::warn!(
                host = %host,
                port,
                "TLS certificate verification is OFF: anyone on the network path can \
                 impersonate the server and read the credentials"
            );
        }
        let config = tls::client_config(self.tls_verify, extra)?;
        let name = tls::server_name(self.tls_server_name.as_deref().unwrap_or(host), "`host`")
            .map_err(|e| e.for_setting("host"))?;
        Ok(Some((TlsConnector::from(config), name)))
    }

    /// The configured EHLO name, checked; else this host's name when it is a FQDN (`None`:
    /// the address literal of each connection's local end).
    fn ehlo_name(&self) -> Result<Option<String>, Error> {
        let configured = self
            .local_hostname
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(name) = configured {
            if !ehlo::is_valid_configured(name) {
                return Err(Error::config_for(
                    "local_hostname",
                    format!(
                        "`local_hostname` is `{name}`, which is not a valid EHLO name; expected \
                         a domain name (mail.example.com) or an address literal ([192.0.2.1])"
                    ),
                ));
            }
        }
        Ok(configured.map(str::to_string).or_else(|| {
            ehlo::system_hostname()
                .filter(|h| ehlo::is_fqdn(h.trim()))
                .map(|h| {
                    let h = h.trim();
                    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
                })
        }))
    }

    /// The pool's limits, the timeouts, and the mechanism against the credentials.
    fn check_limits(&self) -> Result<(), Error> {
        if self.pool_size == 0 {
            return Err(Error::config("the SMTP pool size must be at least 1"));
        }
        if self.max_messages == 0 {
            return Err(Error::config(
                "the messages-per-connection cap must be at least 1",
            ));
        }
        let t = self.timeouts;
        if [t.connect, t.tls, t.greeting, t.command, t.data_end]
            .iter()
            .any(Duration::is_zero)
        {
            return Err(Error::config("SMTP timeouts must be longer than zero"));
        }
        if let (Some(m), Some(c)) = (self.mechanism, &self.credentials) {
            if m.is_oauth2() != matches!(c, Credentials::OAuth2 { .. }) {
                return Err(Error::config(format!(
                    "SASL mechanism {m} does not match the credentials (use PLAIN or LOGIN with \
                     a password, XOAUTH2 or OAUTHBEARER with an OAuth2 token)"
                )));
            }
        }
        Ok(())
    }
}

/// A TLS client and the name the server's certificate must match.
type TlsClient = (TlsConnector, rustls::pki_types::ServerName<'static>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn builder_defaults_and_validation() {
        let t = SmtpTransport::builder("smtp.example.com").build().unwrap();
        assert_eq!((t.port(), t.tls_mode()), (587, TlsMode::StartTls));
        let t = SmtpTransport::builder("relay.local")
            .tls(TlsMode::None)
            .build()
            .unwrap();
        assert_eq!(t.port(), 25);
        assert_eq!(t.describe(), "smtp://relay.local:25 (none)");
        let t = SmtpTransport::builder("::1")
            .tls(TlsMode::None)
            .port(2525)
            .build()
            .unwrap();
        assert_eq!(t.describe(), "smtp://[::1]:2525 (none)");

        for (b, needle) in [
            (SmtpTransport::builder(""), "empty"),
            (SmtpTransport::builder("bad host"), "not a host name"),
            (
                SmtpTransport::builder("h.example").pool_size(0),
                "pool size",
            ),
            (
                SmtpTransport::builder("h.example").local_hostname("bad name"),
                "EHLO",
            ),
            (
                SmtpTransport::builder("h.example").timeout(Duration::ZERO),
                "zero",
            ),
            (
                SmtpTransport::builder("h.example")
                    .credentials(Credentials::password("u", "p"))
                    .mechanism(Mechanism::XOAuth2),
                "does not match",
            ),
            (
                SmtpTransport::builder("h.example").ca_file("/nonexistent/ca.pem"),
                "ca_file",
            ),
        ] {
            let err = b.build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn debug_and_describe_never_show_secrets() {
        let t = SmtpTransport::builder("smtp.example.com")
            .credentials(Credentials::password(
                "alice@example.com",
                "canary-password-731",
            ))
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let text = format!("{t:?} {}", t.describe());
        assert!(!text.contains("canary-password-731"), "{text}");
        assert!(text.contains("alice@example.com"));
        assert!(t.describe().contains("certificate verification off"));
        let t = SmtpTransport::builder("smtp.example.com")
            .credentials(Credentials::oauth2_static(
                "alice@example.com",
                "canary-token-913",
            ))
            .build()
            .unwrap();
        assert!(!format!("{t:?} {}", t.describe()).contains("canary-token-913"));
    }

    #[test]
    fn configured_ehlo_name_is_used_verbatim() {
        let t = SmtpTransport::builder("h.example")
            .local_hostname("app.example.org")
            .build()
            .unwrap();
        assert_eq!(t.inner.params.ehlo_name.as_deref(), Some("app.example.org"));
        let t = SmtpTransport::builder("h.example")
            .local_hostname("  ")
            .build()
            .unwrap();
        assert_ne!(t.inner.params.ehlo_name.as_deref(), Some(""));
    }
}
