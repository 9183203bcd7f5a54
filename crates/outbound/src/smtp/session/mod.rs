//! One SMTP session, by phase:
//!
//! ```text
//! opening      connect ─▶ [TLS handshake (implicit)] ─▶ greeting ─▶ EHLO
//!                      ─▶ [STARTTLS ─▶ handshake ─▶ EHLO] ─▶ [AUTH] ─▶ Session (ready) ◀──┐
//!                                                                         │               │
//! transaction  MAIL FROM, RCPT TO…, DATA (one write when PIPELINING)  ◀────┘               │
//!                      ─▶ payload ─▶ "." ─▶ 2xx/4xx/5xx at the end of DATA ───────────────┤
//!              refused midway ─▶ RSET ────────────────────────────────────────────────────┘
//!
//!              any I/O failure, timeout or 421 ─▶ the connection is dropped
//! ```
//!
//! Why by phase: the phase at the moment something fails decides what the failure *means*. A
//! broken connection after the final `.` went out is [`ErrorKind::Ambiguous`] — the server may
//! have queued the message — and must never be retried silently; the same failure one step
//! earlier is safe to retry. The types keep the phases apart: an `Opening` is a connection on
//! its way (greeting, EHLO, STARTTLS, AUTH) and `Opening::login` is the only way to a ready
//! [`Session`]; only a `Session` runs a transaction, and a transaction that breaks the
//! connection does not give the session back, so the pool only ever holds usable connections.
//! `RSET` is sent only after a transaction failed midway.
//!
//! Every phase has its own timeout ([`Timeouts`]): connect, TLS handshake, greeting, each
//! command's reply, and the end of DATA (writing the payload and waiting for the final reply).
//!
//! The files: `opening` (connect to ready), `capabilities` (the EHLO reply), `preflight` (what
//! is checked before MAIL FROM), `transaction` (MAIL, RCPT, DATA, RSET), `pipeline` (the same
//! transaction in steps, so the next one's commands can follow the final `.`), `io` (replies and
//! writes within their time limits, and what a failure means in each phase), `socket` (TCP
//! options).
//!
//! [`ErrorKind::Ambiguous`]: crate::ErrorKind::Ambiguous

mod capabilities;
mod io;
mod opening;
mod pipeline;
mod preflight;
mod socket;
mod step;
mod transaction;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use tokio_rustls::TlsConnector;

use super::auth::{Credentials, Mechanism};
use super::tls::TlsMode;

#[cfg(test)]
pub(crate) use capabilities::mechanism_bit;
pub(crate) use capabilities::Capabilities;
pub(crate) use io::Connection;
pub(crate) use pipeline::{BdatSent, Outline};
pub(crate) use step::{Lost, Step};
pub(crate) use transaction::{Accepted, Delivery};

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
    /// The same limit for every phase.
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
    /// Whether to send with `BDAT` when the server offers CHUNKING (and PIPELINING).
    pub chunking: bool,
}

/// A ready session: between transactions, it may start one or be pooled. Only
/// `Opening::login` makes one, and [`transaction`](Session::transaction) gives it back only
/// while its connection is usable.
pub(crate) struct Session {
    conn: Connection,
    caps: Capabilities,
    /// When a transaction last finished (or the session became ready).
    pub(crate) last_used: Instant,
    /// Transactions completed on this connection.
    pub(crate) transactions: u32,
    /// Its slot under a shared connection cap, given back when the session is dropped.
    pub(crate) lease: Option<crate::limits::ConnectionLease>,
}

impl Session {
    pub(crate) fn id(&self) -> u64 {
        self.conn.id()
    }

    #[cfg(test)]
    pub(crate) fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether an idle session still looks usable: no unexpected bytes buffered, and the server
    /// has not closed it or said anything (a `421` before closing) while it sat idle. Costs no
    /// round trip.
    pub(crate) fn probe_idle(&mut self) -> bool {
        self.conn.probe_quiet("idle connection")
    }

    /// Says goodbye (QUIT); errors are ignored, the session is over either way. Then gives
    /// its shared slot back, if it has one.
    pub(crate) async fn quit(self) {
        self.conn.close().await;
        if let Some(lease) = self.lease {
            lease.release().await;
        }
    }

    /// Whether the connection is still usable (always, for a session the types let you hold).
    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        !self.conn.is_broken()
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
