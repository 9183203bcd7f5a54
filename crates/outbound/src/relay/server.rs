//! [`RelayServer`]: the relay's settings, checked and bound, and its accept loops.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::access::{check_listener, AccessPolicy};
use super::context::Context;
use super::limits::{AuthFailures, Limits};
use super::listener::{accept_loop, Listener};
use super::session;
use super::spool::Spool;
use super::tls::acceptor;
use super::users::Users;
use crate::{Error, ErrorKind};

/// The default listener: loopback, port 2525.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";

/// Settings of a relay, checked by [`RelayBuilder::bind`].
pub struct RelayBuilder {
    spool: Arc<dyn Spool>,
    hostname: Option<String>,
    listen: Vec<SocketAddr>,
    listen_tls: Vec<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
    users: Option<PathBuf>,
    allow_from: Vec<IpNet>,
    limits: Limits,
    chunking: bool,
    grace: Duration,
}

impl RelayBuilder {
    /// Adds a plain listener (STARTTLS offered when a certificate is set). Without any
    /// listener the relay listens on [`DEFAULT_LISTEN`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Adds an implicit-TLS listener (needs [`RelayBuilder::tls_files`]).
    pub fn listen_tls(mut self, addr: SocketAddr) -> Self {
        self.listen_tls.push(addr);
        self
    }

    /// The PEM certificate chain and private key for STARTTLS and the implicit-TLS listener.
    pub fn tls_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// The users file (AUTH PLAIN and LOGIN; see [`crate::relay::add_user`]). Without it
    /// there is no AUTH, and only loopback clients and allowed networks may relay.
    pub fn users_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.users = Some(path.into());
        self
    }

    /// A network whose clients may relay without AUTH.
    pub fn allow_from(mut self, net: IpNet) -> Self {
        self.allow_from.push(net);
        self
    }

    /// The limits (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The relay's host name in the greeting, `Received:` and added Message-IDs (default:
    /// this host's name when it is a valid domain name, else `localhost`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// Announces CHUNKING (BDAT, RFC 3030). On by default.
    pub fn chunking(mut self, on: bool) -> Self {
        self.chunking = on;
        self
    }

    /// How long a shutdown waits for sessions to finish before cutting them (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Checks the settings (never an open relay: [`check_listener`] for every listener),
    /// reads the users file and the TLS files, and binds the listeners.
    pub async fn bind(self) -> Result<RelayServer, Error> {
        let mut listen = self.listen.clone();
        if listen.is_empty() && self.listen_tls.is_empty() {
            listen.push(
                DEFAULT_LISTEN
                    .parse()
                    .map_err(|_| Error::config("default listener"))?,
            );
        }
        for addr in listen.iter().chain(&self.listen_tls) {
            check_listener(*addr, self.users.is_some(), &self.allow_from)?;
        }
        self.check_limits()?;
        let tls =
            match &self.tls {
                Some((cert, key)) => Some(acceptor(cert, key)?),
                None if !self.listen_tls.is_empty() => return Err(Error::config_for(
                    "listen_tls",
                    "an implicit-TLS listener needs a certificate and key (`tls_cert`, `tls_key`)",
                )),
                None => None,
            };
        let users = match &self.users {
            Some(path) => Some(Users::open(path).map_err(|e| Error::from(e).for_setting("users"))?),
            None => None,
        };
        let host = match self.hostname {
            Some(h) if valid_hostname(&h) => h,
            Some(h) => {
                return Err(Error::config_for(
                    "hostname",
                    format!("`hostname` {h:?} is not a host name"),
                ))
            }
            None => default_hostname(),
        };
        let mut listeners = Vec::new();
        for (addr, implicit_tls) in listen
            .iter()
            .map(|a| (*a, false))
            .chain(self.listen_tls.iter().map(|a| (*a, true)))
        {
            let tcp = TcpListener::bind(addr).await.map_err(|e| {
                Error::new(
                    ErrorKind::Network,
                    format!("could not listen on {addr}: {e}"),
                )
            })?;
            listeners.push(Listener { tcp, implicit_tls });
        }
        let ctx = Context {
            host,
            access: AccessPolicy::new(users.is_some(), self.allow_from),
            users,
            failures: AuthFailures::new(self.limits.auth.clone()),
            checks: Semaphore::new(self.limits.auth.max_concurrent_checks.max(1)),
            spool: self.spool,
            tls,
            chunking: self.chunking,
            limits: self.limits,
        };
        Ok(RelayServer {
            listeners,
            ctx: Arc::new(ctx),
            grace: self.grace,
        })
    }

    fn check_limits(&self) -> Result<(), Error> {
        let l = &self.limits;
        let bad = |what: &str| Err(Error::config_for("limits", format!("`limits`: {what}")));
        if l.max_connections == 0 {
            return bad("max_connections is 0");
        }
        if l.max_recipients == 0 {
            return bad("max_recipients is 0");
        }
        if l.max_command_line < 512 {
            return bad("max_command_line is below 512 (RFC 5321 section 4.5.3.1.4)");
        }
        if l.max_auth_line < 512 {
            return bad("max_auth_line is below 512");
        }
        if l.max_data_line < 78 {
            return bad("max_data_line is below 78");
        }
        Ok(())
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
}

fn default_hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if valid_hostname(&name) && name.contains('.') {
        name
    } else {
        "localhost".to_string()
    }
}

/// A relay whose listeners are bound: [`RelayServer::serve_until`] or
/// [`RelayServer::spawn`] runs it.
///
/// ```no_run
/// use std::sync::Arc;
/// use outbound::relay::{RelayServer, Spool};
/// # async fn run(spool: Arc<dyn Spool>) -> Result<(), outbound::Error> {
/// let relay = RelayServer::builder(spool)
///     .listen("127.0.0.1:2525".parse().unwrap())
///     .users_file("/etc/outbound/relay-users")
///     .bind()
///     .await?;
/// // Until the process is stopped (the CLI passes a future that completes on SIGTERM).
/// relay.serve_until(std::future::pending()).await;
/// # Ok(()) }
/// ```
pub struct RelayServer {
    listeners: Vec<Listener>,
    ctx: Arc<Context>,
    grace: Duration,
}

impl RelayServer {
    /// Settings for a relay that gives accepted messages to `spool`.
    pub fn builder(spool: Arc<dyn Spool>) -> RelayBuilder {
        RelayBuilder {
            spool,
            hostname: None,
            listen: Vec::new(),
            listen_tls: Vec::new(),
            tls: None,
            users: None,
            allow_from: Vec::new(),
            limits: Limits::default(),
            chunking: true,
            grace: Duration::from_secs(30),
        }
    }

    /// The plain listeners' addresses (with the port the system chose for port 0).
    pub fn plain_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(false)
    }

    /// The implicit-TLS listeners' addresses.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(true)
    }

    fn addrs(&self, implicit_tls: bool) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| l.implicit_tls == implicit_tls)
            .filter_map(Listener::local_addr)
            .collect()
    }

    /// The host name the relay gives.
    pub fn hostname(&self) -> &str {
        &self.ctx.host
    }

    /// Runs one session on a connection accepted elsewhere (a socket handed over by a
    /// service manager, a test's in-memory stream). `client` is the address the access rules
    /// see; with `implicit_tls` the stream starts with a TLS handshake. The connection count
    /// does not apply.
    pub async fn serve_connection<S>(&self, stream: S, client: SocketAddr, implicit_tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_keep, shutdown) = watch::channel(false);
        session::run(
            self.ctx.clone(),
            Box::new(stream),
            client,
            implicit_tls,
            shutdown,
        )
        .await;
    }

    /// Serves until `shutdown` completes, then stops accepting, asks idle sessions to close,
    /// and waits for the rest (at most the grace period).
    pub async fn serve_until(self, shutdown: impl Future<Output = ()> + Send) {
        let (tx, rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.ctx.limits.max_connections));
        let mut loops = Vec::new();
        for listener in self.listeners {
            loops.push(tokio::spawn(accept_loop(
                listener,
                self.ctx.clone(),
                slots.clone(),
                rx.clone(),
                self.grace,
            )));
        }
        shutdown.await;
        tracing::info!(target: "outbound::relay", "shutting down");
        let _ = tx.send(true);
        for l in loops {
            let _ = l.await;
        }
    }

    /// Runs the relay on a task; the handle stops it.
    pub fn spawn(self) -> RelayHandle {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve_until(async move {
            let _ = rx.await;
        }));
        RelayHandle {
            stop: Some(tx),
            task,
        }
    }
}

/// A relay running on a task ([`RelayServer::spawn`]). Dropping it stops the relay too.
pub struct RelayHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops accepting, lets sessions finish (within the grace period), and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
