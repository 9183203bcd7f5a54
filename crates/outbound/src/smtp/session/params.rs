//! What every connection of one transport is opened with, and how long each phase may take.

use std::time::Duration;

use tokio_rustls::TlsConnector;

use crate::smtp::auth::{Credentials, Mechanism};
use crate::smtp::tls::TlsMode;

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

/// A duration for messages: `30 s`, `0.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
