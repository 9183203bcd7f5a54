//! From a TCP connection to a ready [`Session`]: connect, TLS, greeting, EHLO, STARTTLS, AUTH.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::net::TcpStream;

use super::sasl::{self as auth, AuthFailure};
use super::socket::Tuning;
use super::{secs, Capabilities, ConnectParams, Connection, Session};
use crate::oauth::{self, Attempt};
use crate::smtp::auth::{AccessTokenSource, Credentials};
use crate::smtp::ehlo;
use crate::smtp::reply::{self, Stage};
use crate::smtp::tls::{self, TlsMode};
use crate::smtp::wire::{Command, Counters};
use crate::{Error, ErrorKind};

mod tls_probe;

/// Ports whose servers speak implicit TLS (submissions, RFC 8314).
const IMPLICIT_TLS_PORTS: &[u16] = &[465];

/// How long silence at the greeting is waited for on such a port before it counts as the
/// port speaking TLS (servers greet within milliseconds; Postfix's 465 stalls about 40 ms).
const IMPLICIT_TLS_SILENCE: Duration = Duration::from_secs(5);

/// How long a plain-text greeting may be silent, on any port, before a second connection asks
/// the port whether it speaks TLS (servers greet within milliseconds; a slow one is still
/// waited for, the probe proves only TLS).
const GREETING_SILENCE: Duration = Duration::from_secs(1);

/// How long a probe's connection may take to be answered (a TLS server answers a ClientHello
/// at once; a plain-text server greets at once).
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// The shortest greeting limit worth a probe (the default is 30 s): a shorter one is waited
/// out, which costs little and opens no second connection to a server that merely stalls.
const PROBE_MIN_LIMIT: Duration = Duration::from_secs(5);

/// A connection on its way to ready: connected, then greeted, told EHLO, maybe upgraded to TLS.
/// Any failure drops it; [`login`](Self::login) turns it into a [`Session`].
pub(crate) struct Opening {
    conn: Connection,
    caps: Capabilities,
}

impl Session {
    /// Opens a ready session: OAuth2 token, connect, TLS, greeting, EHLO, STARTTLS, AUTH.
    ///
    /// With OAuth2 credentials the token is obtained *before* connecting, so a slow or failing
    /// token endpoint never holds an SMTP connection open, and every new connection (pooled
    /// ones included) authenticates with a token that is current at that moment. A rejected
    /// token is retried once with a fresh one ([`Opening::login`]); `next_id` numbers the
    /// replacement connection when the server closed the first.
    pub(crate) async fn open(
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        next_id: &(dyn Fn() -> u64 + Send + Sync),
    ) -> Result<Session, Error> {
        let token = first_token(&params).await?;
        let connect = || async {
            Opening::connect(params.clone(), counters.clone(), next_id())
                .await?
                .handshake()
                .await
        };
        connect().await?.login(token, connect).await
    }
}

impl Opening {
    /// The TCP connection, not yet greeted.
    async fn connect(
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        id: u64,
    ) -> Result<Opening, Error> {
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
        let tuning = Tuning::of(&tcp, params.tls_mode != TlsMode::None);
        let local = tcp.local_addr().ok();
        Ok(Opening::with(Connection::new(
            Box::new(tcp),
            local,
            tuning,
            params,
            counters,
            id,
        )))
    }

    /// A connection over an established stream (a test pipe), not yet greeted.
    #[cfg(test)]
    pub(crate) fn over(
        io: Box<dyn super::io::Io>,
        local: Option<SocketAddr>,
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        id: u64,
    ) -> Opening {
        Opening::with(Connection::new(
            io,
            local,
            Tuning::none(),
            params,
            counters,
            id,
        ))
    }

    fn with(conn: Connection) -> Opening {
        Opening {
            conn,
            caps: Capabilities::default(),
        }
    }

    /// Everything between the TCP connect and ready, for connections over a test pipe (no
    /// reconnecting).
    #[cfg(test)]
    pub(crate) async fn handshake_and_login(self) -> Result<Session, Error> {
        let token = first_token(&self.conn.params).await?;
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

    /// The greeting of a plain-text connection, telling a port that speaks implicit TLS apart
    /// from a slow server. Such a port says nothing (it waits for a TLS ClientHello) or answers
    /// in TLS; waiting out the whole timeout and reporting a retryable timeout would make a job
    /// queue retry a configuration mistake forever. So after [`GREETING_SILENCE`] a ClientHello
    /// on a second connection asks the port (when the limit is at least [`PROBE_MIN_LIMIT`]),
    /// while this one still waits for its greeting; a TLS answer, TLS bytes here, or (on port
    /// 465) silence for [`IMPLICIT_TLS_SILENCE`] are a configuration error with the fix.
    async fn plain_greeting(&mut self) -> Result<reply::Reply, Error> {
        let params = self.conn.params.clone();
        let implicit_port = IMPLICIT_TLS_PORTS.contains(&params.port);
        let limit = if implicit_port {
            params.timeouts.greeting.min(IMPLICIT_TLS_SILENCE)
        } else {
            params.timeouts.greeting
        };
        let host = params.host.trim_start_matches('[').trim_end_matches(']');
        let probe = async {
            tokio::time::sleep(GREETING_SILENCE).await;
            tls_probe::answers_tls(host, params.port, PROBE_WAIT).await
        };
        // `None`: the probe proved TLS before a greeting came.
        let greeting = {
            let read = self.conn.read_reply_within(Stage::Greeting, limit);
            tokio::pin!(read, probe);
            let mut probed = limit < PROBE_MIN_LIMIT;
            loop {
                tokio::select! {
                    r = &mut read => break Some(r),
                    tls = &mut probe, if !probed => {
                        probed = true;
                        if tls {
                            break None;
                        }
                    }
                }
            }
        };
        match greeting {
            Some(Ok((reply, _))) => Ok(reply),
            None => Err(implicit_tls_port(
                &params,
                format!(
                    "sent no greeting within {} s but answers a TLS ClientHello",
                    GREETING_SILENCE.as_secs_f64()
                ),
            )),
            Some(Err(_)) if self.conn.received_tls_record() => Err(implicit_tls_port(
                &params,
                "answered in TLS where a plain-text 220 greeting belongs".to_string(),
            )),
            Some(Err(e)) if implicit_port && e.kind() == ErrorKind::Timeout => {
                Err(implicit_tls_port(
                    &params,
                    format!("sent no greeting within {} s", limit.as_secs_f64()),
                )
                .with_source(e))
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// Greeting, EHLO, STARTTLS and EHLO again: everything before AUTH.
    pub(crate) async fn handshake(mut self) -> Result<Opening, Error> {
        let params = self.conn.params.clone();
        tracing::debug!(conn = self.conn.id(), host = %params.host, port = params.port, tls = %params.tls_mode, "connected");
        if params.tls_mode == TlsMode::Implicit {
            self.start_tls().await?;
        }
        let greeting = if params.tls_mode == TlsMode::Implicit {
            self.conn.read_reply(Stage::Greeting).await?
        } else {
            self.plain_greeting().await?
        };
        if greeting.code != 220 {
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
                    self.conn.send(&[Command::StartTls]).await?;
                    let r = self.conn.read_reply(Stage::StartTls).await?;
                    if r.code != 220 {
                        return Err(Error::new(
                            ErrorKind::Tls,
                            format!("{}:{} refused STARTTLS", params.host, params.port),
                        )
                        .with_code(r.server_code())
                        .with_server_text(r.one_line()));
                    }
                    if self.conn.has_buffered_input() {
                        // Bytes after the 220 were sent before TLS: an injection attempt
                        // (CVE-2011-0411 style); nothing read in plain text may be trusted.
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
                        conn = self.conn.id(),
                        host = %params.host,
                        "the server does not offer STARTTLS; continuing without TLS (tls=opportunistic)"
                    );
                }
            }
            _ => {}
        }
        Ok(self)
    }

    async fn ehlo(&mut self) -> Result<(), Error> {
        let name = match &self.conn.params.ehlo_name {
            Some(n) => n.clone(),
            None => ehlo::choose(
                None,
                None,
                self.conn
                    .local
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            ),
        };
        self.conn.send(&[Command::Ehlo(&name)]).await?;
        let (r, raw) = self.conn.read_reply_raw(Stage::Ehlo).await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&raw, &r, self.caps.tls);
            let c = &self.caps;
            tracing::debug!(
                conn = self.conn.id(),
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
            self.conn.send(&[Command::Helo(&name)]).await?;
            let h = self.conn.read_reply(Stage::Ehlo).await?;
            if h.code == 250 {
                self.caps = Capabilities {
                    tls: self.caps.tls,
                    ..Capabilities::default()
                };
                return Ok(());
            }
            return Err(reply::error_for(
                &h,
                Stage::Ehlo,
                format!("the server refused HELO {name}"),
            ));
        }
        Err(reply::error_for(
            &r,
            Stage::Ehlo,
            format!("the server refused EHLO {name}"),
        ))
    }

    async fn start_tls(&mut self) -> Result<(), Error> {
        let params = self.conn.params.clone();
        let Some((connector, server_name)) = &params.tls else {
            return Err(Error::new(ErrorKind::Tls, "TLS is not configured"));
        };
        let io = self.conn.take_stream()?;
        let implicit = params.tls_mode == TlsMode::Implicit;
        match tokio::time::timeout(
            params.timeouts.tls,
            connector.connect(server_name.clone(), io),
        )
        .await
        {
            Ok(Ok(stream)) => {
                // The server's session tickets and next reply must not wait for a delayed ACK.
                self.conn.tuning.after_tls_handshake();
                let (_, conn) = stream.get_ref();
                tracing::debug!(
                    conn = self.conn.id(),
                    version = ?conn.protocol_version(),
                    cipher = ?conn.negotiated_cipher_suite().map(|c| c.suite()),
                    "TLS established"
                );
                self.conn.put_stream(Box::new(stream));
                self.caps.tls = true;
                Ok(())
            }
            Ok(Err(e)) if implicit && not_tls(&e) => Err(plain_text_port(&params, e).await),
            Ok(Err(e)) => Err(tls::handshake_error(e, &params.host, params.port, implicit)),
            Err(_) => Err(Error::new(
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
            )),
        }
    }

    /// Authenticates (when credentials are configured) and makes the session ready.
    ///
    /// This is the one place where a rejected OAuth2 token is retried, for `send` and `verify`
    /// alike (the pool never authenticates on its own): [`oauth::with_fresh_token`]
    /// invalidates `token` and, when the source then gives a *different* one, authentication is
    /// tried once more with it: on this connection while the server keeps it open, else on a
    /// new one from `reconnect`. A second rejection, or the same token again (a static token),
    /// ends in the server's `Auth` error, which carries its decoded JSON reason.
    pub(crate) async fn login<F, Fut>(
        self,
        token: Option<SecretString>,
        reconnect: F,
    ) -> Result<Session, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Opening, Error>>,
    {
        let params = self.conn.params.clone();
        let Some(creds) = &params.credentials else {
            return Ok(self.into_ready());
        };
        // tls=none was chosen explicitly (and warned about when the transport was built);
        // opportunistic falling back to plain text is the surprise worth a warning.
        if !self.caps.tls && params.tls_mode == TlsMode::Opportunistic {
            tracing::warn!(
                conn = self.conn.id(),
                host = %params.host,
                "sending credentials over an unencrypted connection (tls=opportunistic, no \
                 STARTTLS offered)"
            );
        }
        let token = match (creds, token) {
            (Credentials::OAuth2 { token: source, .. }, Some(first)) => {
                return self
                    .login_oauth2(creds, source.as_ref(), first, reconnect)
                    .await
            }
            (_, token) => token,
        };
        // Password credentials: one attempt.
        let mut opening = self;
        match opening.authenticate(creds, token.as_ref()).await {
            Ok(()) => Ok(opening.into_ready()),
            Err(f) => {
                opening.quit().await;
                Err(f.error)
            }
        }
    }

    /// OAuth2 authentication with at most one retry on a fresh token (see [`login`](Self::login)).
    async fn login_oauth2<F, Fut>(
        self,
        creds: &Credentials,
        source: &dyn AccessTokenSource,
        first: SecretString,
        reconnect: F,
    ) -> Result<Session, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Opening, Error>>,
    {
        let first_id = self.conn.id();
        // The connection the next attempt authenticates on: a failed attempt leaves its
        // connection here while it is usable, for the retry or for QUIT.
        let spare = Mutex::new(Some(self));
        let mut retry = false;
        let result = oauth::with_fresh_token(source, first, |token| {
            let mut previous = take(&spare);
            let is_retry = std::mem::replace(&mut retry, true);
            let (spare, reconnect) = (&spare, &reconnect);
            async move {
                let open = match previous.as_mut() {
                    Some(o) => !is_retry || o.still_open(),
                    None => false,
                };
                let (mut opening, reused) = match previous {
                    Some(o) if open => {
                        if is_retry {
                            tracing::info!(
                                conn = o.conn.id(),
                                "the server rejected the OAuth2 token; authenticating once more \
                                 with a new token"
                            );
                        }
                        (o, is_retry)
                    }
                    previous => {
                        tracing::info!(
                            conn = first_id,
                            "the server rejected the OAuth2 token and closed the connection; \
                             authenticating once more with a new token on a new connection"
                        );
                        if let Some(o) = previous {
                            o.quit().await;
                        }
                        (reconnect().await?, false)
                    }
                };
                match opening.authenticate(creds, Some(&token)).await {
                    Ok(()) => Ok(opening.into_ready()),
                    // The server closed the connection after the first rejection and it showed
                    // only now, before the new token was judged: the same single retry, on a
                    // new connection.
                    Err(f) if !f.token_rejected && reused && opening.conn.is_broken() => {
                        tracing::info!(
                            conn = opening.conn.id(),
                            error = %f.error,
                            "the connection closed after the rejection; retrying on a new connection"
                        );
                        drop(opening);
                        let mut opening = reconnect().await?;
                        match opening.authenticate(creds, Some(&token)).await {
                            Ok(()) => Ok(opening.into_ready()),
                            Err(f) => Err(set_aside(spare, opening, f)),
                        }
                    }
                    Err(f) => Err(set_aside(spare, opening, f)),
                }
            }
        })
        .await;
        if let Some(leftover) = take(&spare) {
            leftover.quit().await;
        }
        result
    }

    async fn authenticate(
        &mut self,
        creds: &Credentials,
        token: Option<&SecretString>,
    ) -> Result<(), AuthFailure> {
        let params = self.conn.params.clone();
        auth::authenticate(
            &mut self.conn,
            &self.caps,
            creds,
            params.mechanism,
            &params.host,
            params.port,
            token,
        )
        .await
        .map(|_| ())
    }

    fn into_ready(self) -> Session {
        Session {
            conn: self.conn,
            caps: self.caps,
            last_used: Instant::now(),
            transactions: 0,
            lease: None,
        }
    }

    /// After a rejected AUTH: whether the server kept the connection open (nothing buffered, no
    /// close pending), so authentication may be tried again on it.
    fn still_open(&mut self) -> bool {
        self.conn.probe_quiet("connection after a rejected AUTH")
    }

    /// Says goodbye (QUIT, unless the connection is broken).
    pub(crate) async fn quit(self) {
        self.conn.close().await;
    }
}

/// A configuration error for a port that speaks implicit TLS where plain text was expected;
/// `what` says what the port did.
fn implicit_tls_port(params: &ConnectParams, what: String) -> Error {
    Error::config_for(
        "tls",
        format!(
            "{}:{} {what} ({} mode): the port likely speaks implicit TLS (TLS from the first \
             byte): select implicit TLS with `tls=implicit` (an smtps:// DSN), or use port 587 \
             for STARTTLS",
            params.host, params.port, params.tls_mode
        ),
    )
}

/// The error for an implicit-TLS handshake that got something other than TLS back: when a
/// second connection is greeted in plain text, the port likely speaks STARTTLS, and the
/// error says so, quoting the greeting; otherwise the handshake's own error.
async fn plain_text_port(params: &ConnectParams, e: std::io::Error) -> Error {
    let host = params.host.trim_start_matches('[').trim_end_matches(']');
    let wait = params.timeouts.greeting.min(PROBE_WAIT);
    let Some(greeting) = tls_probe::plain_text_greeting(host, params.port, wait).await else {
        return tls::handshake_error(e, &params.host, params.port, true);
    };
    Error::new(
        ErrorKind::Tls,
        format!(
            "{}:{} greeted in plain text ({greeting:?}) where the TLS handshake of implicit \
             TLS belongs: the port likely speaks STARTTLS: select it with `tls=starttls`, \
             or use port 465 for implicit TLS",
            params.host, params.port
        ),
    )
    .for_setting("tls")
    .with_source(e)
}

/// Whether a handshake failed because what came back was not TLS at all (a plain-text
/// greeting, say), rather than TLS the client refused.
fn not_tls(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. })
    )
}

/// The token OAuth2 credentials will authenticate with, obtained before connecting; `None`
/// for password credentials or none.
async fn first_token(params: &ConnectParams) -> Result<Option<SecretString>, Error> {
    match &params.credentials {
        Some(Credentials::OAuth2 { token, username }) => {
            oauth::current_token(token.as_ref(), || {
                format!(
                    "{username} (to authenticate to {}:{})",
                    params.host, params.port
                )
            })
            .await
            .map(Some)
        }
        _ => Ok(None),
    }
}

/// A failed OAuth2 attempt: its connection is kept for a retry (or QUIT) while usable, and
/// whether the server rejected the token decides whether a fresh one is tried.
fn set_aside(spare: &Mutex<Option<Opening>>, opening: Opening, f: AuthFailure) -> Attempt<Session> {
    if !opening.conn.is_broken() {
        *lock(spare) = Some(opening);
    }
    if f.token_rejected {
        Attempt::Rejected(Err(f.error))
    } else {
        Attempt::Failed(f.error)
    }
}

fn take(spare: &Mutex<Option<Opening>>) -> Option<Opening> {
    lock(spare).take()
}

fn lock(spare: &Mutex<Option<Opening>>) -> std::sync::MutexGuard<'_, Option<Opening>> {
    // Nothing panics while holding it; a poisoned slot is still consistent.
    spare.lock().unwrap_or_else(|p| p.into_inner())
}
