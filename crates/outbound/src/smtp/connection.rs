//! One SMTP session, as an explicit state machine:
//!
//! ```text
//! connect ─▶ [TLS handshake (implicit)] ─▶ greeting ─▶ EHLO ─▶ [STARTTLS ─▶ handshake ─▶ EHLO]
//!         ─▶ [AUTH] ─▶ Ready ◀──────────────────────────────────────────────┐
//!                        │ MAIL FROM, RCPT TO…, DATA (one write when PIPELINING) │ 2xx/4xx/5xx
//!                        ▼                                                   │ at end of DATA
//!                  InTransaction ─▶ payload ─▶ "." ─▶ AwaitingDataEnd ───────┘
//!                        │ refused midway
//!                        ▼
//!                  RSET ─▶ Ready            any I/O failure, timeout or 421 ─▶ Broken
//! ```
//!
//! Why a state machine: the state at the moment something fails decides what the failure
//! *means*. A broken connection while the session is `AwaitingDataEnd` (the final `.` went
//! out) is [`ErrorKind::Ambiguous`] — the server may have queued the message — and must never
//! be retried silently; the same failure one step earlier is safe to retry. Only a session
//! back in `Ready` may be reused, and `RSET` is sent only after a transaction failed midway.
//!
//! Every phase has its own timeout ([`Timeouts`]): connect, TLS handshake, greeting, each
//! command's reply, and the end of DATA (writing the payload and waiting for the final reply).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::auth::{self, Credentials, Mechanism};
use super::ehlo;
use super::reply::{self, Reply, ReplyError, Stage};
use super::tls::{self, TlsMode};
use super::wire::{self, Command, Counters, MailFrom};
use crate::message::Envelope;
use crate::{Error, ErrorKind, RejectedRecipient};

/// How long each phase of a session may take.
///
/// ```
/// use std::time::Duration;
/// use outbound::smtp::Timeouts;
/// let mut t = Timeouts::all(Duration::from_secs(5));
/// assert_eq!(t.greeting, Duration::from_secs(5));
/// // A large attachment over a slow link may need longer at the end of DATA.
/// t.data_end = Duration::from_secs(120);
/// assert_eq!(Timeouts::default().command, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Resolving the host and opening the TCP connection.
    pub connect: Duration,
    /// The TLS handshake (implicit TLS or after STARTTLS).
    pub tls: Duration,
    /// Waiting for the server's 220 greeting.
    pub greeting: Duration,
    /// Waiting for the reply to each command (EHLO, AUTH, MAIL, RCPT, DATA, RSET, QUIT), and
    /// writing command lines.
    pub command: Duration,
    /// Writing the message, and then waiting for the reply to the final `.`.
    pub data_end: Duration,
}

impl Timeouts {
    /// The same limit for every phase (SMTP_TIMEOUT).
    pub fn all(limit: Duration) -> Self {
        Timeouts {
            connect: limit,
            tls: limit,
            greeting: limit,
            command: limit,
            data_end: limit,
        }
    }
}

impl Default for Timeouts {
    /// 30 seconds for every phase.
    fn default() -> Self {
        Timeouts::all(Duration::from_secs(30))
    }
}

/// What every connection of one transport is opened with.
pub(crate) struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub tls_mode: TlsMode,
    /// Present whenever the mode may use TLS.
    pub tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    pub credentials: Option<Credentials>,
    pub mechanism: Option<Mechanism>,
    /// The EHLO name when it does not depend on the connection (configured, or this host's
    /// FQDN); `None` means "address literal of the local end".
    pub ehlo_name: Option<String>,
    pub timeouts: Timeouts,
    /// Whether to pipeline when the server offers PIPELINING.
    pub pipelining: bool,
}

/// What the server said it supports in its EHLO reply (and whether the session is encrypted).
#[derive(Debug, Clone, Default)]
pub(crate) struct Capabilities {
    /// The session runs over TLS.
    pub tls: bool,
    /// EHLO succeeded (false after a HELO fallback: no extensions).
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    /// SIZE was advertised (RFC 1870), with its limit when one was given (0 = none).
    pub size: Option<usize>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub has_auth: bool,
    /// `smtp_proto::AUTH_*` bits of the offered mechanisms.
    pub auth: u64,
    /// The offered mechanisms as the server named them (for messages).
    pub auth_names: Vec<String>,
}

impl Capabilities {
    /// Reads an EHLO reply: `smtp-proto` parses the keywords; the AUTH names are kept as
    /// written for error messages. A reply `smtp-proto` cannot parse falls back to a keyword scan
    /// so an unusual extension never makes a server unusable.
    fn from_ehlo(raw: &[u8], reply: &Reply, tls: bool) -> Capabilities {
        let mut caps = Capabilities {
            tls,
            esmtp: true,
            ..Capabilities::default()
        };
        let lines: Vec<String> = reply
            .text
            .split('\n')
            .skip(1)
            .map(|l| l.trim().to_ascii_uppercase())
            .collect();
        for line in &lines {
            if let Some(rest) = line
                .strip_prefix("AUTH")
                .filter(|r| r.starts_with([' ', '=']))
            {
                for name in rest[1..].split_whitespace() {
                    if !caps.auth_names.iter().any(|n| n == name) {
                        caps.auth_names.push(name.to_string());
                    }
                }
            }
        }
        match smtp_proto::EhloResponse::<String>::parse(&mut raw.iter()) {
            Ok(parsed) => {
                let has = |bit| parsed.has_capability(bit);
                caps.pipelining = has(smtp_proto::EXT_PIPELINING);
                caps.starttls = has(smtp_proto::EXT_START_TLS);
                caps.size = has(smtp_proto::EXT_SIZE).then_some(parsed.size);
                caps.eight_bit_mime = has(smtp_proto::EXT_8BIT_MIME);
                caps.smtputf8 = has(smtp_proto::EXT_SMTP_UTF8);
                caps.has_auth = has(smtp_proto::EXT_AUTH) || !caps.auth_names.is_empty();
                caps.auth = parsed.auth_mechanisms;
            }
            Err(e) => {
                tracing::debug!(error = %e, "EHLO reply not parsed by smtp-proto; scanning keywords");
                for line in &lines {
                    let mut words = line.split_whitespace();
                    match words.next().unwrap_or_default() {
                        "PIPELINING" => caps.pipelining = true,
                        "STARTTLS" => caps.starttls = true,
                        "8BITMIME" => caps.eight_bit_mime = true,
                        "SMTPUTF8" => caps.smtputf8 = true,
                        "SIZE" => {
                            caps.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0))
                        }
                        _ => {}
                    }
                }
                caps.has_auth = !caps.auth_names.is_empty();
            }
        }
        // Both spellings agree with what smtp-proto saw; add the four we use if only named.
        for name in &caps.auth_names {
            if let Ok(m) = name.parse::<Mechanism>() {
                caps.auth |= mechanism_bit(m);
            }
        }
        caps
    }

    /// The SIZE limit, when the server set one.
    fn size_limit(&self) -> Option<usize> {
        self.size.filter(|&s| s > 0)
    }
}

fn mechanism_bit(m: Mechanism) -> u64 {
    match m {
        Mechanism::Plain => smtp_proto::AUTH_PLAIN,
        Mechanism::Login => smtp_proto::AUTH_LOGIN,
        Mechanism::XOAuth2 => smtp_proto::AUTH_XOAUTH2,
        Mechanism::OAuthBearer => smtp_proto::AUTH_OAUTHBEARER,
    }
}

/// Asks the kernel to acknowledge the next segments at once (Linux `TCP_QUICKACK`; a no-op
/// elsewhere). Best effort: a failure only costs latency.
fn set_quickack(socket: &socket2::Socket) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.set_tcp_quickack(true) {
        tracing::debug!(error = %e, "TCP_QUICKACK not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

/// Any byte stream a session can run over (TCP, TLS over TCP, an in-memory pipe in tests).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Connecting, greeting, EHLO, STARTTLS, AUTH.
    Opening,
    /// Between transactions: may start one, or be pooled.
    Ready,
    /// MAIL FROM was sent; the transaction has not ended.
    InTransaction,
    /// The final `.` went out: a failure now leaves delivery unknown.
    AwaitingDataEnd,
    /// Unusable (I/O failure, timeout, 421, protocol error). Dropped, never reused.
    Broken,
    /// QUIT was sent.
    Closed,
}

/// What the server accepted.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    pub reply: Reply,
}

/// The replies of one transaction's envelope phase.
struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<(String, Reply)>,
    data: Option<Reply>,
}

/// How many commands one pipelined write carries at most; larger groups are split so the
/// server's replies never fill the socket buffers while we are still writing.
const PIPELINE_GROUP: usize = 100;

/// One SMTP connection.
pub(crate) struct Session {
    io: Option<Box<dyn Io>>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    caps: Capabilities,
    state: State,
    params: Arc<ConnectParams>,
    counters: Arc<Counters>,
    id: u64,
    local: Option<SocketAddr>,
    /// A second handle on the TCP socket (a dup'd descriptor) for socket options once the
    /// stream is wrapped in TLS; `None` over test pipes.
    socket: Option<socket2::Socket>,
    /// Quick-ACK once more after the next write (see `start_tls`).
    quickack_after_write: bool,
    /// When the session became ready.
    pub(crate) opened: Instant,
    /// When a transaction last finished (or the session opened).
    pub(crate) last_used: Instant,
    /// Transactions completed on this connection.
    pub(crate) transactions: u32,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.counters.connection_closed();
    }
}

impl Session {
    /// Opens a ready session: OAuth2 token, connect, TLS, greeting, EHLO, STARTTLS, AUTH.
    ///
    /// With OAuth2 credentials the token is obtained *before* connecting, so a slow or failing
    /// token endpoint never holds an SMTP connection open, and every new connection (pooled
    /// ones included) authenticates with a token that is current at that moment. A rejected
    /// token is retried once with a fresh one ([`login`](Self::login)); `next_id` numbers the
    /// replacement connection when the server closed the first.
    pub(crate) async fn open(
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        next_id: &(dyn Fn() -> u64 + Send + Sync),
    ) -> Result<Session, Error> {
        let token = current_token(&params).await?;
        let session = Self::connect(params.clone(), counters.clone(), next_id())
            .await?
            .handshake()
            .await?;
        session
            .login(token, || async {
                Self::connect(params.clone(), counters.clone(), next_id())
                    .await?
                    .handshake()
                    .await
            })
            .await
    }

    /// The TCP connection, not yet greeted.
    async fn connect(
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        id: u64,
    ) -> Result<Session, Error> {
        let host = params
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = params.port;
        let t = params.timeouts;
        let tcp = match tokio::time::timeout(t.connect, TcpStream::connect((host.as_str(), port)))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("cannot connect to {host}:{port}: {e}"),
                )
                .with_source(e))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "could not connect to {host}:{port} within {}",
                        secs(t.connect)
                    ),
                ))
            }
        };
        // Pipelined groups and short replies must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        #[cfg(unix)]
        let socket = {
            use std::os::fd::AsFd;
            tcp.as_fd()
                .try_clone_to_owned()
                .ok()
                .map(socket2::Socket::from)
        };
        #[cfg(not(unix))]
        let socket = None;
        let mut session = Session::over(Box::new(tcp), local, params, counters, id);
        session.socket = socket;
        Ok(session)
    }

    /// A session over an established stream (TCP, or a test pipe), not yet greeted.
    pub(crate) fn over(
        io: Box<dyn Io>,
        local: Option<SocketAddr>,
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        id: u64,
    ) -> Session {
        counters.connection_opened();
        let now = Instant::now();
        Session {
            io: Some(io),
            rbuf: Vec::with_capacity(1024),
            wbuf: Vec::with_capacity(1024),
            caps: Capabilities::default(),
            state: State::Opening,
            params,
            counters,
            id,
            local,
            socket: None,
            quickack_after_write: false,
            opened: now,
            last_used: now,
            transactions: 0,
        }
    }

    /// Everything between the TCP connect and `Ready`, for sessions over a test pipe (no
    /// reconnecting).
    #[cfg(test)]
    pub(crate) async fn handshake_and_login(self) -> Result<Session, Error> {
        let token = current_token(&self.params).await?;
        self.handshake()
            .await?
            .login(token, || async {
                Err(Error::new(
                    ErrorKind::Network,
                    "the server closed the connection (no reconnecting over a test pipe)",
                ))
            })
            .await
    }

    /// Greeting, EHLO, STARTTLS and EHLO again: everything before AUTH.
    async fn handshake(mut self) -> Result<Session, Error> {
        let params = self.params.clone();
        tracing::debug!(conn = self.id, host = %params.host, port = params.port, tls = %params.tls_mode, "connected");
        if params.tls_mode == TlsMode::Implicit {
            self.start_tls().await?;
        }
        let greeting = self.read_reply(Stage::Greeting).await?;
        if greeting.code != 220 {
            self.state = State::Broken;
            return Err(reply::error_for(
                &greeting,
                Stage::Greeting,
                format!("{}:{} refused the connection", params.host, params.port),
            ));
        }
        self.ehlo().await?;
        match params.tls_mode {
            TlsMode::StartTls | TlsMode::Opportunistic if !self.caps.tls => {
                if self.caps.starttls {
                    self.send(&[Command::StartTls]).await?;
                    let r = self.read_reply(Stage::StartTls).await?;
                    if r.code != 220 {
                        self.state = State::Broken;
                        return Err(Error::new(
                            ErrorKind::Tls,
                            format!("{}:{} refused STARTTLS", params.host, params.port),
                        )
                        .with_code(r.server_code())
                        .with_server_text(r.one_line()));
                    }
                    if !self.rbuf.is_empty() {
                        // Bytes after the 220 were sent before TLS: an injection attempt
                        // (CVE-2011-0411 style); nothing read in plain text may be trusted.
                        self.state = State::Broken;
                        return Err(Error::new(
                            ErrorKind::Tls,
                            "the server sent data after its STARTTLS reply (possible response \
                             injection); refusing to continue",
                        ));
                    }
                    self.start_tls().await?;
                    self.ehlo().await?;
                } else if params.tls_mode == TlsMode::StartTls {
                    let err = Error::new(
                        ErrorKind::Tls,
                        format!(
                            "{}:{} does not offer STARTTLS, which tls=starttls requires; refusing \
                             to continue without TLS (no credentials were sent). Use tls=implicit \
                             for port 465, or tls=none only for a trusted local relay",
                            params.host, params.port
                        ),
                    );
                    self.quit().await;
                    return Err(err);
                } else {
                    tracing::warn!(
                        conn = self.id,
                        host = %params.host,
                        "the server does not offer STARTTLS; continuing without TLS (tls=opportunistic)"
                    );
                }
            }
            _ => {}
        }
        Ok(self)
    }

    /// Authenticates (when credentials are configured) and makes the session `Ready`.
    ///
    /// This is the one place where a rejected OAuth2 token is retried, for `send` and `verify`
    /// alike (the pool never authenticates on its own). When the server rejects `token` (a
    /// 5xx to AUTH, or a `334` JSON error), the source has already been told to invalidate it;
    /// the source is asked again and, if it gives a *different* token, authentication is tried
    /// once more with it: on this connection while the server keeps it open, else on a new
    /// one from `reconnect`. A second rejection, or the same token again (a static token),
    /// ends in the server's `Auth` error, which carries its decoded JSON reason.
    pub(crate) async fn login<F, Fut>(
        mut self,
        token: Option<SecretString>,
        reconnect: F,
    ) -> Result<Session, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Session, Error>>,
    {
        let params = self.params.clone();
        let Some(creds) = &params.credentials else {
            return Ok(self.into_ready());
        };
        // tls=none was chosen explicitly (and warned about when the transport was built);
        // opportunistic falling back to plain text is the surprise worth a warning.
        if !self.caps.tls && params.tls_mode == TlsMode::Opportunistic {
            tracing::warn!(
                conn = self.id,
                host = %params.host,
                "sending credentials over an unencrypted connection (tls=opportunistic, no \
                 STARTTLS offered)"
            );
        }
        let failure = match self.authenticate(creds, token.as_ref()).await {
            Ok(()) => return Ok(self.into_ready()),
            Err(f) => f,
        };
        let (Some(rejected), true, Credentials::OAuth2 { token: source, .. }) =
            (token, failure.token_rejected, creds)
        else {
            self.quit_if_opening().await;
            return Err(failure.error);
        };
        let fresh = match source.access_token().await {
            Ok(t) => t,
            Err(e) => {
                self.quit_if_opening().await;
                return Err(after_rejection(&failure.error, e));
            }
        };
        if fresh.expose_secret() == rejected.expose_secret() {
            tracing::debug!(
                conn = self.id,
                "the token source has no other token (a static token); not retrying"
            );
            self.quit_if_opening().await;
            return Err(failure.error);
        }
        let mut reconnect = Some(reconnect);
        let mut session = self;
        if !session.still_open() {
            tracing::info!(
                conn = session.id,
                "the server rejected the OAuth2 token and closed the connection; \
                 authenticating once more with a new token on a new connection"
            );
            session.quit_if_opening().await;
            match reconnect.take() {
                Some(r) => session = r().await?,
                None => return Err(failure.error),
            }
        } else {
            tracing::info!(
                conn = session.id,
                "the server rejected the OAuth2 token; authenticating once more with a new token"
            );
        }
        match session.authenticate(creds, Some(&fresh)).await {
            Ok(()) => Ok(session.into_ready()),
            // The server closed the connection after the first rejection and it showed only
            // now, before the new token was judged: the same single retry, on a new connection.
            Err(f)
                if !f.token_rejected && session.state == State::Broken && reconnect.is_some() =>
            {
                tracing::info!(
                    conn = session.id,
                    error = %f.error,
                    "the connection closed after the rejection; retrying on a new connection"
                );
                drop(session);
                let Some(r) = reconnect.take() else {
                    return Err(f.error);
                };
                let mut session = r().await?;
                match session.authenticate(creds, Some(&fresh)).await {
                    Ok(()) => Ok(session.into_ready()),
                    Err(f) => {
                        session.quit_if_opening().await;
                        Err(f.error)
                    }
                }
            }
            Err(f) => {
                session.quit_if_opening().await;
                Err(f.error)
            }
        }
    }

    async fn authenticate(
        &mut self,
        creds: &Credentials,
        token: Option<&SecretString>,
    ) -> Result<(), auth::AuthFailure> {
        let params = self.params.clone();
        auth::authenticate(
            self,
            creds,
            params.mechanism,
            &params.host,
            params.port,
            token,
        )
        .await
        .map(|_| ())
    }

    fn into_ready(mut self) -> Session {
        self.state = State::Ready;
        self.opened = Instant::now();
        self.last_used = self.opened;
        self
    }

    async fn quit_if_opening(&mut self) {
        if self.state == State::Opening {
            self.quit().await;
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    async fn ehlo(&mut self) -> Result<(), Error> {
        let name = match &self.params.ehlo_name {
            Some(n) => n.clone(),
            None => ehlo::choose(
                None,
                None,
                self.local
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            ),
        };
        self.send(&[Command::Ehlo(&name)]).await?;
        let (r, raw) = self.read_reply_raw(Stage::Ehlo).await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&raw, &r, self.caps.tls);
            let c = &self.caps;
            tracing::debug!(
                conn = self.id,
                esmtp = c.esmtp,
                tls = c.tls,
                pipelining = c.pipelining,
                starttls = c.starttls,
                size = ?c.size,
                auth = %c.auth_names.join(" "),
                "server capabilities"
            );
            return Ok(());
        }
        if (500..600).contains(&r.code) {
            // RFC 5321 section 3.2: a server that does not know EHLO gets HELO.
            self.send(&[Command::Helo(&name)]).await?;
            let h = self.read_reply(Stage::Ehlo).await?;
            if h.code == 250 {
                self.caps = Capabilities {
                    tls: self.caps.tls,
                    ..Capabilities::default()
                };
                return Ok(());
            }
            self.state = State::Broken;
            return Err(reply::error_for(
                &h,
                Stage::Ehlo,
                format!("the server refused HELO {name}"),
            ));
        }
        self.state = State::Broken;
        Err(reply::error_for(
            &r,
            Stage::Ehlo,
            format!("the server refused EHLO {name}"),
        ))
    }

    async fn start_tls(&mut self) -> Result<(), Error> {
        let params = self.params.clone();
        let Some((connector, server_name)) = &params.tls else {
            return Err(Error::new(ErrorKind::Tls, "TLS is not configured"));
        };
        let io = self
            .io
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Network, "the connection is closed"))?;
        let implicit = params.tls_mode == TlsMode::Implicit;
        match tokio::time::timeout(
            params.timeouts.tls,
            connector.connect(server_name.clone(), io),
        )
        .await
        {
            Ok(Ok(stream)) => {
                // The server sends its TLS 1.3 session tickets right after the handshake and
                // then, as a second small write, its greeting (465) or EHLO reply (587).
                // Postfix's Nagle holds that reply until the tickets are acknowledged, and
                // Linux delays the ACK by 40 ms because we have nothing to send with it:
                // a 40 ms stall per new connection (measured: 38 vs 131 msg/s, BENCHMARKS.md).
                // Quick-ACK mode acknowledges the tickets at once. Sending (our EHLO after
                // STARTTLS) puts Linux back into delayed-ACK mode, so it is set again after
                // the next write; with implicit TLS we only wait for the greeting.
                if let Some(socket) = &self.socket {
                    set_quickack(socket);
                    self.quickack_after_write = true;
                }
                let (_, conn) = stream.get_ref();
                tracing::debug!(
                    conn = self.id,
                    version = ?conn.protocol_version(),
                    cipher = ?conn.negotiated_cipher_suite().map(|c| c.suite()),
                    "TLS established"
                );
                self.io = Some(Box::new(stream));
                self.caps.tls = true;
                Ok(())
            }
            Ok(Err(e)) => {
                self.state = State::Broken;
                Err(tls::handshake_error(e, &params.host, params.port, implicit))
            }
            Err(_) => {
                self.state = State::Broken;
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the TLS handshake with {}:{} did not finish within {}{}",
                        params.host,
                        params.port,
                        secs(params.timeouts.tls),
                        if implicit {
                            " (does the port really speak implicit TLS? 587 and 25 use STARTTLS)"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        }
    }

    /// Writes `commands` in one network write (a pipelined group when there are several).
    pub(crate) async fn send(&mut self, commands: &[Command<'_>]) -> Result<(), Error> {
        self.wbuf.clear();
        for c in commands {
            tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: {}", c.log_line());
            c.write_to(&mut self.wbuf);
        }
        let limit = self.params.timeouts.command;
        let what = commands.first().map(|c| c.name()).unwrap_or("a command");
        let buf = std::mem::take(&mut self.wbuf);
        let result = self.write_all(&buf, limit).await;
        self.wbuf = buf;
        match result {
            Ok(()) => {
                self.counters.wrote_commands(commands.len() as u64);
                Ok(())
            }
            Err(failure) => Err(self.failure(failure, &format!("sending {what}"), limit)),
        }
    }

    async fn write_all(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Failure> {
        let io = self.io.as_mut().ok_or(Failure::Eof)?;
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        let result = match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout),
        };
        if std::mem::take(&mut self.quickack_after_write) {
            if let Some(socket) = &self.socket {
                set_quickack(socket);
            }
        }
        result
    }

    /// Reads one reply, within the phase's time limit.
    pub(crate) async fn read_reply(&mut self, stage: Stage) -> Result<Reply, Error> {
        self.read_reply_raw(stage).await.map(|(r, _)| r)
    }

    async fn read_reply_raw(&mut self, stage: Stage) -> Result<(Reply, Vec<u8>), Error> {
        let limit = match stage {
            Stage::Greeting => self.params.timeouts.greeting,
            Stage::DataEnd => self.params.timeouts.data_end,
            _ => self.params.timeouts.command,
        };
        let result = tokio::time::timeout(limit, self.read_frame()).await;
        let what = format!("waiting for the reply to {}", stage.what());
        match result {
            Ok(Ok((reply, raw))) => {
                tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "S: {reply}");
                if reply.code == 421 {
                    // "Service not available, closing transmission channel".
                    self.state = State::Broken;
                }
                Ok((reply, raw))
            }
            Ok(Err(failure)) => Err(self.failure(failure, &what, limit)),
            Err(_) => Err(self.failure(Failure::Timeout, &what, limit)),
        }
    }

    async fn read_frame(&mut self) -> Result<(Reply, Vec<u8>), Failure> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(len) = reply::complete_reply_len(&self.rbuf).map_err(Failure::Reply)? {
                let raw: Vec<u8> = self.rbuf.drain(..len).collect();
                let reply = reply::parse_reply(&raw).map_err(Failure::Reply)?;
                return Ok((reply, raw));
            }
            let io = self.io.as_mut().ok_or(Failure::Eof)?;
            let n = io.read(&mut chunk).await.map_err(Failure::Io)?;
            if n == 0 {
                return Err(Failure::Eof);
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Turns a low-level failure into an error whose kind depends on the session's state: after
    /// the final `.` it is [`ErrorKind::Ambiguous`].
    fn failure(&mut self, failure: Failure, what: &str, limit: Duration) -> Error {
        let ambiguous = self.state == State::AwaitingDataEnd;
        self.state = State::Broken;
        let host = &self.params.host;
        let (kind, message, source) = match failure {
            Failure::Timeout => (
                ErrorKind::Timeout,
                format!("{host} did not answer within {} ({what})", secs(limit)),
                None,
            ),
            Failure::Eof => (
                ErrorKind::Network,
                format!("{host} closed the connection ({what})"),
                None,
            ),
            Failure::Io(e) => (
                ErrorKind::Network,
                format!("the connection to {host} failed ({what}): {e}"),
                Some(e),
            ),
            Failure::Reply(e) => (ErrorKind::Permanent, format!("{e} ({what})"), None),
        };
        let mut err = if ambiguous {
            Error::new(
                ErrorKind::Ambiguous,
                format!(
                    "{message} after the end of DATA was sent: the message may have been \
                     delivered; it was not retried"
                ),
            )
        } else {
            Error::new(kind, message)
        };
        if let Some(e) = source {
            err = err.with_source(e);
        }
        err
    }

    /// Runs one mail transaction. `data` is the dot-stuffed payload (without the final `.`);
    /// `size` the message's size for SIZE; `eight_bit` whether it has 8-bit bytes.
    pub(crate) async fn transaction(
        &mut self,
        envelope: &Envelope,
        data: &[u8],
        size: usize,
        eight_bit: bool,
    ) -> Result<Delivery, Error> {
        if self.state != State::Ready {
            return Err(Error::new(
                ErrorKind::Network,
                "internal: a transaction was started on a connection that is not ready",
            ));
        }
        if let Some(limit) = self.caps.size_limit() {
            if size > limit {
                return Err(Error::new(
                    ErrorKind::Permanent,
                    format!(
                        "the message is {size} bytes but {} accepts at most {limit} bytes (SIZE)",
                        self.params.host
                    ),
                ));
            }
        }
        if envelope.smtputf8 && !self.caps.smtputf8 {
            let addr = std::iter::once(&envelope.from)
                .chain(&envelope.to)
                .find(|a| !a.is_ascii())
                .cloned()
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Permanent,
                format!(
                    "the address `{addr}` has a non-ASCII local part, which needs the SMTPUTF8 \
                     extension, and {} does not offer it",
                    self.params.host
                ),
            ));
        }
        for addr in std::iter::once(&envelope.from).chain(&envelope.to) {
            if !wire::is_safe_path(addr) {
                return Err(Error::new(
                    ErrorKind::InvalidMessage,
                    format!("the address {addr:?} cannot be sent in an SMTP envelope"),
                ));
            }
        }
        if envelope.to.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidMessage,
                "the message has no recipient",
            ));
        }
        // RFC 6152: 8-bit content only to a server that offers 8BITMIME (SMTPUTF8, checked
        // above, implies it: RFC 6531 section 3.1).
        if eight_bit && !self.caps.eight_bit_mime && !envelope.smtputf8 {
            return Err(Error::new(
                ErrorKind::Permanent,
                format!(
                    "the message contains 8-bit bytes and {} does not offer 8BITMIME; send it \
                     with 7-bit encodings (quoted-printable or base64)",
                    self.params.host
                ),
            ));
        }
        let eight_bit_param = (eight_bit || envelope.smtputf8) && self.caps.eight_bit_mime;
        let mail = Command::Mail(MailFrom {
            address: &envelope.from,
            size: self.caps.size.map(|_| size),
            eight_bit: eight_bit_param,
            smtputf8: envelope.smtputf8,
        });

        self.state = State::InTransaction;
        let replies = if self.caps.pipelining && self.params.pipelining {
            self.envelope_pipelined(mail, &envelope.to).await?
        } else {
            self.envelope_lockstep(mail, &envelope.to).await?
        };

        if !replies.mail.is_positive() {
            self.abort(replies.data.as_ref()).await;
            return Err(reply::error_for(
                &replies.mail,
                Stage::Mail,
                format!("the server refused the sender <{}>", envelope.from),
            ));
        }
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for (addr, r) in replies.rcpts {
            if r.is_positive() {
                accepted.push(addr);
            } else {
                rejected.push(RejectedRecipient {
                    address: addr,
                    code: r.code,
                    enhanced: r.enhanced.clone(),
                    text: r.one_line(),
                });
            }
        }
        if accepted.is_empty() {
            self.abort(replies.data.as_ref()).await;
            return Err(all_refused(&rejected));
        }
        let data_reply = match replies.data {
            Some(r) => r,
            None => {
                self.state = State::Broken;
                return Err(Error::new(
                    ErrorKind::Network,
                    "internal: DATA was not sent",
                ));
            }
        };
        if data_reply.code != 354 {
            self.abort(None).await;
            return Err(reply::error_for(
                &data_reply,
                Stage::Data,
                "the server refused DATA",
            ));
        }

        // The payload: a failure here is still before the end of DATA (no final "." yet).
        let limit = self.params.timeouts.data_end;
        if let Err(f) = self.write_all(data, limit).await {
            return Err(self.failure(f, "sending the message", limit));
        }
        // From the moment the final "." may have left, the outcome can be unknown.
        self.state = State::AwaitingDataEnd;
        tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: <{} bytes of message> .", data.len());
        if let Err(f) = self.write_all(wire::END_OF_DATA, limit).await {
            return Err(self.failure(f, "sending the end of DATA", limit));
        }
        let final_reply = self.read_reply(Stage::DataEnd).await?;
        if self.state == State::AwaitingDataEnd {
            self.state = State::Ready;
        }
        self.transactions += 1;
        self.last_used = Instant::now();
        if final_reply.is_positive() {
            Ok(Delivery {
                accepted,
                rejected,
                reply: final_reply,
            })
        } else {
            Err(reply::error_for(
                &final_reply,
                Stage::DataEnd,
                "the server rejected the message at the end of DATA",
            ))
        }
    }

    /// MAIL, every RCPT and DATA in one write (RFC 2920), then their replies in order.
    async fn envelope_pipelined(
        &mut self,
        mail: Command<'_>,
        recipients: &[String],
    ) -> Result<EnvelopeReplies, Error> {
        let mut commands = Vec::with_capacity(recipients.len() + 2);
        commands.push(mail);
        commands.extend(recipients.iter().map(|r| Command::Rcpt(r)));
        commands.push(Command::Data);
        let mut replies = Vec::with_capacity(commands.len());
        for group in commands.chunks(PIPELINE_GROUP) {
            self.send(group).await?;
            for c in group {
                let stage = match c {
                    Command::Mail(_) => Stage::Mail,
                    Command::Rcpt(_) => Stage::Rcpt,
                    _ => Stage::Data,
                };
                replies.push(self.read_reply(stage).await?);
            }
        }
        let mut replies = replies.into_iter();
        let mail = replies.next().ok_or_else(missing_reply)?;
        let rcpts = recipients
            .iter()
            .map(|r| Ok((r.clone(), replies.next().ok_or_else(missing_reply)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let data = replies.next();
        Ok(EnvelopeReplies { mail, rcpts, data })
    }

    /// One command per round trip, stopping early when the sender or every recipient is
    /// refused.
    async fn envelope_lockstep(
        &mut self,
        mail: Command<'_>,
        recipients: &[String],
    ) -> Result<EnvelopeReplies, Error> {
        self.send(&[mail]).await?;
        let mail = self.read_reply(Stage::Mail).await?;
        if !mail.is_positive() {
            return Ok(EnvelopeReplies {
                mail,
                rcpts: Vec::new(),
                data: None,
            });
        }
        let mut rcpts = Vec::with_capacity(recipients.len());
        for r in recipients {
            self.send(&[Command::Rcpt(r)]).await?;
            rcpts.push((r.clone(), self.read_reply(Stage::Rcpt).await?));
        }
        let data = if rcpts.iter().any(|(_, r)| r.is_positive()) {
            self.send(&[Command::Data]).await?;
            Some(self.read_reply(Stage::Data).await?)
        } else {
            None
        };
        Ok(EnvelopeReplies { mail, rcpts, data })
    }

    /// Ends a transaction that failed midway: if the server nevertheless asked for data, an
    /// empty payload is ended at once; then RSET. A failure here leaves the session broken.
    async fn abort(&mut self, data_reply: Option<&Reply>) {
        if self.state == State::Broken {
            return;
        }
        if data_reply.is_some_and(|r| r.code == 354) {
            let limit = self.params.timeouts.data_end;
            if self.write_all(wire::END_OF_DATA, limit).await.is_err()
                || self.read_reply(Stage::DataEnd).await.is_err()
            {
                self.state = State::Broken;
                return;
            }
        }
        self.reset().await;
    }

    /// RSET; the session is ready again when the server agrees, broken otherwise.
    pub(crate) async fn reset(&mut self) {
        if self.send(&[Command::Rset]).await.is_err() {
            return;
        }
        match self.read_reply(Stage::Rset).await {
            Ok(r) if r.is_positive() => self.state = State::Ready,
            Ok(r) => {
                tracing::debug!(conn = self.id, reply = %r, "RSET refused; dropping the connection");
                self.state = State::Broken;
            }
            Err(_) => {}
        }
    }

    /// Whether an idle session still looks usable: ready, no unexpected bytes buffered, and the
    /// server has not closed it or said anything (a `421` before closing) while it sat idle.
    /// Costs no round trip.
    pub(crate) fn probe_idle(&mut self) -> bool {
        if self.state != State::Ready {
            return false;
        }
        self.probe_quiet("idle connection")
    }

    /// After a rejected AUTH: whether the server kept the connection open (nothing buffered, no
    /// close pending), so authentication may be tried again on it.
    fn still_open(&mut self) -> bool {
        self.state == State::Opening && self.probe_quiet("connection after a rejected AUTH")
    }

    /// Whether nothing is buffered and a non-blocking read finds neither data nor a close.
    fn probe_quiet(&mut self, what: &str) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut buf = [0u8; 512];
        let mut read_buf = ReadBuf::new(&mut buf);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match Pin::new(io).poll_read(&mut cx, &mut read_buf) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) => {
                let got = read_buf.filled();
                if got.is_empty() {
                    tracing::debug!(conn = self.id, "{what} was closed by the server");
                } else {
                    tracing::debug!(
                        conn = self.id,
                        said = %String::from_utf8_lossy(got).trim(),
                        "the server spoke unasked on the {what}; dropping it"
                    );
                }
                self.state = State::Broken;
                false
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "{what} is broken");
                self.state = State::Broken;
                false
            }
        }
    }

    /// Says goodbye: QUIT, its reply, then waits briefly for the server to close. Errors are
    /// ignored (the session is over either way).
    pub(crate) async fn quit(&mut self) {
        if matches!(self.state, State::Ready | State::Opening)
            && self.io.is_some()
            && self.send(&[Command::Quit]).await.is_ok()
        {
            let _ = self.read_reply(Stage::Quit).await;
            // Wait (briefly) for the server to close its end, so a new connection opened
            // right after this one never overlaps it on the server.
            if let Some(io) = self.io.as_mut() {
                let mut b = [0u8; 64];
                let _ = tokio::time::timeout(
                    Duration::from_millis(500).min(self.params.timeouts.command),
                    io.read(&mut b),
                )
                .await;
            }
        }
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), io.shutdown()).await;
        }
        self.state = State::Closed;
    }
}

/// A low-level failure, before it is given a meaning.
enum Failure {
    Io(std::io::Error),
    Eof,
    Timeout,
    Reply(ReplyError),
}

fn missing_reply() -> Error {
    Error::new(ErrorKind::Network, "internal: a pipelined reply is missing")
}

/// The error when the server refused every recipient: Transient when every refusal was 4xx.
fn all_refused(rejected: &[RejectedRecipient]) -> Error {
    let kind = if rejected.iter().all(|r| (400..500).contains(&r.code)) {
        ErrorKind::Transient
    } else if rejected
        .iter()
        .any(|r| matches!(r.code, 530 | 534 | 535 | 538))
    {
        ErrorKind::Auth
    } else {
        ErrorKind::Permanent
    };
    let list = rejected
        .iter()
        .map(|r| {
            format!(
                "{} ({}{} {})",
                r.address,
                r.code,
                r.enhanced
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default(),
                r.text
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut err = Error::new(kind, format!("the server refused every recipient: {list}"));
    if let Some(first) = rejected.first() {
        err = err
            .with_code(crate::ServerCode::Smtp {
                code: first.code,
                enhanced: first.enhanced.clone(),
            })
            .with_server_text(first.text.clone());
    }
    err
}

/// The token OAuth2 credentials will authenticate with, obtained before connecting; `None`
/// for password credentials or none.
async fn current_token(params: &ConnectParams) -> Result<Option<SecretString>, Error> {
    match &params.credentials {
        Some(Credentials::OAuth2 { token, username }) => match token.access_token().await {
            Ok(t) => Ok(Some(t)),
            Err(e) => Err(Error::new(
                e.kind(),
                format!(
                    "cannot get an OAuth2 access token for {username} (to authenticate to {}:{}): {}",
                    params.host,
                    params.port,
                    e.message()
                ),
            )
            .with_server_details_of(&e)
            .with_source(e)),
        },
        _ => Ok(None),
    }
}

/// The server rejected a token (`rejection`) and no new one could be obtained (`fetch`): the
/// token endpoint's error, which says what to fix, with the rejection mentioned.
fn after_rejection(rejection: &Error, fetch: Error) -> Error {
    Error::new(
        fetch.kind(),
        format!(
            "{} ({}), and a new token could not be obtained: {}",
            rejection.message(),
            rejection
                .server_text()
                .unwrap_or("the server rejected the token"),
            fetch.message()
        ),
    )
    .with_server_details_of(&fetch)
    .with_source(fetch)
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    //! The state machine driven over an in-memory pipe by a scripted server.

    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    fn params(
        pipelining: bool,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Arc<ConnectParams> {
        Arc::new(ConnectParams {
            host: "mx.test".into(),
            port: 25,
            tls_mode: TlsMode::None,
            tls: None,
            credentials,
            mechanism: None,
            ehlo_name: Some("client.example".into()),
            timeouts: Timeouts::all(timeout),
            pipelining,
        })
    }

    /// A scripted server: for each expected client line (prefix), the reply to send. A reply of
    /// `None` means "read the line but stay silent".
    struct Script {
        server: BufReader<DuplexStream>,
        seen: Vec<String>,
    }

    impl Script {
        async fn say(&mut self, text: &str) {
            self.server
                .get_mut()
                .write_all(text.as_bytes())
                .await
                .unwrap();
        }
        async fn line(&mut self) -> String {
            let mut l = String::new();
            self.server.read_line(&mut l).await.unwrap();
            let l = l.trim_end().to_string();
            self.seen.push(l.clone());
            l
        }
        async fn expect(&mut self, prefix: &str) -> String {
            let l = self.line().await;
            assert!(l.starts_with(prefix), "expected {prefix:?}, got {l:?}");
            l
        }
        async fn read_data(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            loop {
                let mut l = Vec::new();
                self.server.read_until(b'\n', &mut l).await.unwrap();
                if l == b".\r\n" {
                    return out;
                }
                out.extend_from_slice(&l);
            }
        }
    }

    async fn open(
        p: Arc<ConnectParams>,
        ehlo: &str,
    ) -> (Result<Session, Error>, Script, Arc<Counters>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let session = Session::over(Box::new(client), None, p, counters.clone(), 1);
        let mut script = Script {
            server: BufReader::new(server),
            seen: Vec::new(),
        };
        let ehlo = ehlo.to_string();
        let server_side = async {
            script.say("220 mx.test ESMTP\r\n").await;
            script.expect("EHLO client.example").await;
            script.say(&ehlo).await;
        };
        let (session, ()) = tokio::join!(session.handshake_and_login(), server_side);
        (session, script, counters)
    }

    fn envelope(to: &[&str]) -> Envelope {
        Envelope {
            from: "a@example.com".into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            smtputf8: false,
        }
    }

    const EHLO_PIPE: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";

    #[tokio::test]
    async fn pipelines_envelope_and_reports_partial_rejection() {
        let (s, mut script, counters) =
            open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        assert!(s.capabilities().pipelining);
        assert_eq!(s.capabilities().size, Some(1000));
        let env = envelope(&["b@example.com", "reject@example.com", "c@example.com"]);
        let data = wire::encode_data(b"Subject: hi\r\n\r\n.dot\r\n");
        let client = s.transaction(&env, &data, 22, false);
        let server = async {
            // All five commands arrive before any reply is sent: they were pipelined.
            script.expect("MAIL FROM:<a@example.com> SIZE=22").await;
            script.expect("RCPT TO:<b@example.com>").await;
            script.expect("RCPT TO:<reject@example.com>").await;
            script.expect("RCPT TO:<c@example.com>").await;
            script.expect("DATA").await;
            script
                .say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 go\r\n")
                .await;
            let body = script.read_data().await;
            assert_eq!(body, b"Subject: hi\r\n\r\n..dot\r\n");
            script.say("250 2.0.0 Ok: queued as ABC123\r\n").await;
        };
        let (result, ()) = tokio::join!(client, server);
        let d = result.unwrap();
        assert_eq!(d.accepted, ["b@example.com", "c@example.com"]);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].address, "reject@example.com");
        assert_eq!(d.rejected[0].code, 550);
        assert_eq!(d.rejected[0].enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(reply::provider_id(&d.reply).as_deref(), Some("ABC123"));
        assert!(s.is_ready());
        let stats = counters.snapshot();
        assert_eq!(stats.max_commands_per_write, 5);
    }

    #[tokio::test]
    async fn all_recipients_refused_sends_rset_not_data() {
        let (s, mut script, _) = open(
            params(false, None, Duration::from_secs(5)),
            "250-mx.test\r\n250 SIZE\r\n",
        )
        .await;
        let mut s = s.unwrap();
        let env = envelope(&["x@example.com", "y@example.com"]);
        let client = s.transaction(&env, b"x\r\n", 3, false);
        let server = async {
            script.expect("MAIL FROM").await;
            script.say("250 ok\r\n").await;
            script.expect("RCPT TO:<x@").await;
            script.say("450 4.2.0 busy\r\n").await;
            script.expect("RCPT TO:<y@").await;
            script.say("451 4.3.0 later\r\n").await;
            // No DATA: straight to RSET.
            script.expect("RSET").await;
            script.say("250 ok\r\n").await;
        };
        let (result, ()) = tokio::join!(client, server);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "every refusal was 4xx");
        assert!(err.message().contains("x@example.com") && err.message().contains("y@example.com"));
        assert!(s.is_ready(), "RSET made the session reusable");
        assert!(!script.seen.iter().any(|l| l == "DATA"));
    }

    #[tokio::test]
    async fn next_transaction_reuses_without_rset_after_success() {
        let (s, mut script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        for i in 0..2 {
            let env = envelope(&["b@example.com"]);
            let client = s.transaction(&env, b"x\r\n", 3, false);
            let server = async {
                script.expect("MAIL FROM").await;
                script.expect("RCPT TO").await;
                script.expect("DATA").await;
                script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
                script.read_data().await;
                script.say(&format!("250 ok queued as Q{i}\r\n")).await;
            };
            let (r, ()) = tokio::join!(client, server);
            r.unwrap();
        }
        assert!(
            !script.seen.iter().any(|l| l == "RSET"),
            "{:?}",
            script.seen
        );
        assert_eq!(s.transactions, 2);
    }

    #[tokio::test]
    async fn refuses_oversized_messages_before_mail_from() {
        let (s, script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        let err = s
            .transaction(&envelope(&["b@example.com"]), b"x\r\n", 5000, false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message().contains("5000") && err.message().contains("1000"),
            "{err}"
        );
        assert!(s.is_ready());
        assert_eq!(
            script.seen.len(),
            1,
            "only EHLO was sent: {:?}",
            script.seen
        );
    }

    #[tokio::test]
    async fn smtputf8_is_required_when_the_envelope_needs_it() {
        let (s, _script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        let env = Envelope {
            from: "a@example.com".into(),
            to: vec!["jörg@example.com".into()],
            smtputf8: true,
        };
        let err = s.transaction(&env, b"x\r\n", 3, true).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("jörg@example.com") && err.message().contains("SMTPUTF8"));
    }

    #[tokio::test]
    async fn eight_bit_content_needs_8bitmime() {
        let (s, script, _) = open(
            params(true, None, Duration::from_secs(5)),
            "250-mx.test\r\n250 PIPELINING\r\n",
        )
        .await;
        let mut s = s.unwrap();
        let err = s
            .transaction(
                &envelope(&["b@example.com"]),
                "Grüße\r\n".as_bytes(),
                8,
                true,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("8BITMIME"), "{err}");
        assert!(s.is_ready());
        assert_eq!(script.seen.len(), 1, "nothing but EHLO was sent");
    }

    #[tokio::test]
    async fn smtputf8_and_8bitmime_parameters_are_sent_when_offered() {
        let (s, mut script, _) = open(
            params(true, None, Duration::from_secs(5)),
            "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
        )
        .await;
        let mut s = s.unwrap();
        let env = Envelope {
            from: "a@example.com".into(),
            to: vec!["jörg@example.com".into()],
            smtputf8: true,
        };
        let client = s.transaction(&env, "Subject: ü\r\n".as_bytes(), 14, true);
        let server = async {
            script
                .expect("MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8")
                .await;
            script.expect("RCPT TO:<jörg@example.com>").await;
            script.expect("DATA").await;
            script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            script.read_data().await;
            script.say("250 ok\r\n").await;
        };
        let (r, ()) = tokio::join!(client, server);
        r.unwrap();
    }

    #[tokio::test]
    async fn silence_after_the_final_dot_is_ambiguous() {
        let (s, mut script, _) =
            open(params(true, None, Duration::from_millis(300)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        let env = envelope(&["b@example.com"]);
        let client = s.transaction(&env, b"x\r\n", 3, false);
        let server = async {
            script.expect("MAIL FROM").await;
            script.expect("RCPT TO").await;
            script.expect("DATA").await;
            script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            script.read_data().await;
            // ...and never answer.
        };
        let started = Instant::now();
        let (r, ()) = tokio::join!(client, server);
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
        assert!(err.message().contains("may have been delivered"));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!s.is_ready());
    }

    #[tokio::test]
    async fn silence_before_data_is_a_timeout() {
        let (s, mut script, _) =
            open(params(true, None, Duration::from_millis(300)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        let env = envelope(&["b@example.com"]);
        let client = s.transaction(&env, b"x\r\n", 3, false);
        let server = async {
            script.expect("MAIL FROM").await;
        };
        let (r, ()) = tokio::join!(client, server);
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.is_retryable());
        assert_eq!(s.state(), State::Broken);
    }

    #[tokio::test]
    async fn probe_detects_a_closed_idle_connection() {
        let (s, script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        assert!(s.probe_idle(), "an open idle connection is alive");
        drop(script);
        tokio::task::yield_now().await;
        assert!(!s.probe_idle(), "EOF is noticed without a round trip");
    }

    #[tokio::test]
    async fn probe_detects_a_421_on_an_idle_connection() {
        let (s, mut script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let mut s = s.unwrap();
        script
            .say("421 4.4.2 mx.test Error: timeout exceeded\r\n")
            .await;
        tokio::task::yield_now().await;
        assert!(!s.probe_idle());
    }

    async fn auth_session(
        ehlo: &str,
        creds: Credentials,
        server: impl FnOnce(Script) -> futures_script::BoxFut,
    ) -> (Result<Session, Error>, Vec<String>) {
        let (client, srv) = tokio::io::duplex(64 * 1024);
        let counters = Arc::new(Counters::default());
        let session = Session::over(
            Box::new(client),
            None,
            params(true, Some(creds), Duration::from_secs(5)),
            counters,
            1,
        );
        let mut script = Script {
            server: BufReader::new(srv),
            seen: Vec::new(),
        };
        script.say("220 mx.test ESMTP\r\n").await;
        let ehlo = ehlo.to_string();
        let server_side = async move {
            script.expect("EHLO").await;
            script.say(&ehlo).await;
            server(script).await
        };
        let (session, seen) = tokio::join!(session.handshake_and_login(), server_side);
        (session, seen)
    }

    mod futures_script {
        pub type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;
    }

    #[tokio::test]
    async fn plain_auth_uses_an_initial_response() {
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH LOGIN PLAIN\r\n",
            Credentials::password("alice", "pw"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH PLAIN AGFsaWNlAHB3").await;
                    script.say("235 2.7.0 Authentication successful\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert!(s.unwrap().is_ready());
        assert_eq!(seen.len(), 2);
    }

    #[tokio::test]
    async fn login_auth_answers_two_challenges() {
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH LOGIN\r\n",
            Credentials::password("alice", "pw"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH LOGIN").await;
                    script.say("334 VXNlcm5hbWU6\r\n").await;
                    script.expect("YWxpY2U=").await;
                    script.say("334 UGFzc3dvcmQ6\r\n").await;
                    script.expect("cHc=").await;
                    script.say("235 ok\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert!(s.unwrap().is_ready());
        assert_eq!(seen[1], "AUTH LOGIN");
    }

    #[tokio::test]
    async fn direct_535_is_an_auth_error() {
        let (s, _) = auth_session(
            "250-mx.test\r\n250 AUTH PLAIN\r\n",
            Credentials::password("alice", "wrong"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH PLAIN").await;
                    script
                        .say("535 5.7.8 Error: authentication failed\r\n")
                        .await;
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        let err = s.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.smtp_code(), Some(535));
        assert!(
            err.message().contains("alice") && err.message().contains("PLAIN"),
            "{err}"
        );
        assert!(!format!("{err:?}").contains("wrong"));
    }

    #[tokio::test]
    async fn xoauth2_json_error_is_answered_with_an_empty_line() {
        let json = r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, json);
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n",
            Credentials::oauth2_static("alice@example.com", "expired-token"),
            move |mut script| {
                Box::pin(async move {
                    script.expect("AUTH XOAUTH2 ").await;
                    script.say(&format!("334 {b64}\r\n")).await;
                    let empty = script.line().await;
                    assert_eq!(
                        empty, "",
                        "the error challenge is answered with an empty line"
                    );
                    script
                        .say("535 5.7.8 Username and Password not accepted\r\n")
                        .await;
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        let err = s.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.smtp_code(), Some(535));
        assert!(
            err.server_text().unwrap().contains(r#""status":"401""#),
            "{err}"
        );
        assert!(!format!("{err:?} {err}").contains("expired-token"));
        assert!(seen.iter().all(|l| !l.contains("expired-token")));
    }

    #[tokio::test]
    async fn oauthbearer_json_error_is_answered_with_ctrl_a() {
        let (s, _) = auth_session(
            "250-mx.test\r\n250 AUTH OAUTHBEARER\r\n",
            Credentials::oauth2_static("alice@example.com", "tok"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH OAUTHBEARER ").await;
                    script
                        .say("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n")
                        .await;
                    script.expect("AQ==").await;
                    script.say("535 5.7.8 no\r\n").await;
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        let err = s.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert!(err.server_text().unwrap().contains("invalid_token"));
    }

    #[tokio::test]
    async fn long_tokens_wait_for_an_empty_challenge() {
        let token = "t".repeat(3000);
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
            Credentials::oauth2_static("alice@example.com", token),
            |mut script| {
                Box::pin(async move {
                    let l = script.expect("AUTH XOAUTH2").await;
                    assert_eq!(l, "AUTH XOAUTH2", "no initial response on the AUTH line");
                    script.say("334 \r\n").await;
                    let resp = script.line().await;
                    assert!(resp.len() > 3000);
                    script.say("235 ok\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert!(s.unwrap().is_ready());
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn auth_454_is_transient() {
        let (s, _) = auth_session(
            "250-mx.test\r\n250 AUTH PLAIN\r\n",
            Credentials::password("alice", "pw"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH PLAIN").await;
                    script
                        .say("454 4.7.0 Temporary authentication failure\r\n")
                        .await;
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert_eq!(s.err().unwrap().kind(), ErrorKind::Transient);
    }

    /// Hands out its first token until told that it was rejected, then the next one.
    #[derive(Debug)]
    struct Rotating {
        tokens: std::sync::Mutex<Vec<&'static str>>,
        invalidated: std::sync::atomic::AtomicUsize,
    }

    impl Rotating {
        fn new(tokens: &[&'static str]) -> Arc<Self> {
            Arc::new(Rotating {
                tokens: std::sync::Mutex::new(tokens.to_vec()),
                invalidated: Default::default(),
            })
        }
        fn invalidations(&self) -> usize {
            self.invalidated.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl auth::AccessTokenSource for Rotating {
        async fn access_token(&self) -> Result<SecretString, Error> {
            Ok(SecretString::from(self.tokens.lock().unwrap()[0]))
        }
        fn invalidate(&self, token: &SecretString) {
            self.invalidated
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut tokens = self.tokens.lock().unwrap();
            if tokens.len() > 1 && tokens[0] == token.expose_secret() {
                tokens.remove(0);
            }
        }
    }

    /// The token inside an `AUTH XOAUTH2 <initial response>` line.
    fn xoauth2_token(line: &str) -> String {
        let b64 = line.rsplit(' ').next().unwrap();
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        raw.split("auth=Bearer ")
            .nth(1)
            .unwrap()
            .trim_end_matches('\x01')
            .to_string()
    }

    const JSON_401: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=";

    #[tokio::test]
    async fn a_rejected_token_is_replaced_once_on_the_same_connection() {
        let source = Rotating::new(&["old-token", "new-token"]);
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
            Credentials::oauth2("alice@example.com", source.clone()),
            |mut script| {
                Box::pin(async move {
                    let l = script.expect("AUTH XOAUTH2 ").await;
                    assert_eq!(xoauth2_token(&l), "old-token");
                    script.say(&format!("334 {JSON_401}\r\n")).await;
                    assert_eq!(script.line().await, "");
                    script
                        .say("535 5.7.8 Error: authentication failed\r\n")
                        .await;
                    let l = script.expect("AUTH XOAUTH2 ").await;
                    assert_eq!(xoauth2_token(&l), "new-token");
                    script.say("235 2.7.0 Authentication successful\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert!(s.unwrap().is_ready());
        assert_eq!(source.invalidations(), 1);
        assert_eq!(seen.iter().filter(|l| l.starts_with("AUTH")).count(), 2);
    }

    #[tokio::test]
    async fn a_token_rejected_twice_is_an_auth_error_with_the_json_reason() {
        let source = Rotating::new(&["first-token", "second-token", "third-token"]);
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
            Credentials::oauth2("alice@example.com", source.clone()),
            |mut script| {
                Box::pin(async move {
                    for _ in 0..2 {
                        script.expect("AUTH XOAUTH2 ").await;
                        script.say(&format!("334 {JSON_401}\r\n")).await;
                        assert_eq!(script.line().await, "");
                        script
                            .say("535 5.7.8 Error: authentication failed\r\n")
                            .await;
                    }
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        let err = s.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.smtp_code(), Some(535));
        assert!(
            err.server_text().unwrap().contains(r#""status":"401""#),
            "{err}"
        );
        assert_eq!(source.invalidations(), 2, "both tokens were invalidated");
        let auths: Vec<String> = seen
            .iter()
            .filter(|l| l.starts_with("AUTH"))
            .map(|l| xoauth2_token(l))
            .collect();
        assert_eq!(
            auths,
            ["first-token", "second-token"],
            "one retry, not more"
        );
    }

    #[tokio::test]
    async fn after_a_rejection_and_a_close_the_new_token_goes_over_a_new_connection() {
        let source = Rotating::new(&["old-token", "new-token"]);
        let p = params(
            true,
            Some(Credentials::oauth2("alice@example.com", source.clone())),
            Duration::from_secs(5),
        );
        let counters = Arc::new(Counters::default());
        let greet = |ehlo: &'static str| {
            let (client, srv) = tokio::io::duplex(64 * 1024);
            let mut script = Script {
                server: BufReader::new(srv),
                seen: Vec::new(),
            };
            let server = tokio::spawn(async move {
                script.say("220 mx.test ESMTP\r\n").await;
                script.expect("EHLO").await;
                script.say(ehlo).await;
                script
            });
            (client, server)
        };
        let (c1, s1) = greet("250-mx.test\r\n250 AUTH XOAUTH2\r\n");
        let first = Session::over(Box::new(c1), None, p.clone(), counters.clone(), 1)
            .handshake()
            .await
            .unwrap();
        let mut script1 = s1.await.unwrap();
        let server1 = tokio::spawn(async move {
            let l = script1.expect("AUTH XOAUTH2 ").await;
            assert_eq!(xoauth2_token(&l), "old-token");
            script1
                .say("535 5.7.8 Error: authentication failed\r\n")
                .await;
            // ... and the server hangs up.
            drop(script1);
        });
        let reconnected = std::sync::atomic::AtomicBool::new(false);
        let token = Some(SecretString::from("old-token"));
        let login = first.login(token, || async {
            reconnected.store(true, std::sync::atomic::Ordering::SeqCst);
            server1.await.unwrap();
            let (c2, s2) = greet("250-mx.test\r\n250 AUTH XOAUTH2\r\n");
            tokio::spawn(async move {
                let mut script2 = s2.await.unwrap();
                let l = script2.expect("AUTH XOAUTH2 ").await;
                assert_eq!(xoauth2_token(&l), "new-token");
                script2.say("235 2.7.0 ok\r\n").await;
                // Keep the pipe open until the client is done.
                let _ = script2.line().await;
            });
            Session::over(Box::new(c2), None, p.clone(), counters.clone(), 2)
                .handshake()
                .await
        });
        let session = tokio::time::timeout(Duration::from_secs(5), login)
            .await
            .expect("no hang")
            .unwrap();
        assert!(session.is_ready());
        assert_eq!(session.id(), 2, "authenticated on the new connection");
        assert!(reconnected.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(source.invalidations(), 1);
    }

    #[tokio::test]
    async fn a_static_token_that_is_rejected_is_not_retried() {
        let (s, seen) = auth_session(
            "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
            Credentials::oauth2_static("alice@example.com", "static-token"),
            |mut script| {
                Box::pin(async move {
                    script.expect("AUTH XOAUTH2 ").await;
                    script
                        .say("535 5.7.8 Error: authentication failed\r\n")
                        .await;
                    script.expect("QUIT").await;
                    script.say("221 bye\r\n").await;
                    script.seen
                })
            },
        )
        .await;
        assert_eq!(s.err().unwrap().kind(), ErrorKind::Auth);
        assert_eq!(seen.iter().filter(|l| l.starts_with("AUTH")).count(), 1);
    }

    #[tokio::test]
    async fn helo_fallback_when_ehlo_is_unknown() {
        let (client, srv) = tokio::io::duplex(4096);
        let session = Session::over(
            Box::new(client),
            None,
            params(true, None, Duration::from_secs(5)),
            Arc::new(Counters::default()),
            1,
        );
        let mut script = Script {
            server: BufReader::new(srv),
            seen: Vec::new(),
        };
        let server = async {
            script.say("220 old.test SMTP\r\n").await;
            script.expect("EHLO").await;
            script.say("502 command not implemented\r\n").await;
            script.expect("HELO client.example").await;
            script.say("250 old.test\r\n").await;
        };
        let (s, ()) = tokio::join!(session.handshake_and_login(), server);
        let s = s.unwrap();
        assert!(!s.capabilities().esmtp && !s.capabilities().pipelining);
    }

    #[test]
    fn parses_postfix_ehlo() {
        let raw = "250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
        let r = reply::parse_reply(raw.as_bytes()).unwrap();
        let c = Capabilities::from_ehlo(raw.as_bytes(), &r, false);
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.smtputf8 && c.has_auth);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(c.auth_names, ["PLAIN", "LOGIN"]);
        assert_ne!(c.auth & smtp_proto::AUTH_PLAIN, 0);
        assert_ne!(c.auth & smtp_proto::AUTH_LOGIN, 0);
        assert_eq!(c.auth & smtp_proto::AUTH_XOAUTH2, 0);
    }

    #[test]
    fn odd_ehlo_falls_back_to_a_keyword_scan() {
        let raw = "250-mx\r\n250-FUTURERELEASE notanumber\r\n250-PIPELINING\r\n250-AUTH XOAUTH2\r\n250 SIZE 99\r\n";
        let r = reply::parse_reply(raw.as_bytes()).unwrap();
        let c = Capabilities::from_ehlo(raw.as_bytes(), &r, true);
        assert!(c.pipelining && c.has_auth);
        assert_eq!(c.size, Some(99));
        assert_ne!(c.auth & smtp_proto::AUTH_XOAUTH2, 0);
    }
}
