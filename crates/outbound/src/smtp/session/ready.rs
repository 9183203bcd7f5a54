//! [`Session`]: a connection ready for a transaction.

use std::time::Instant;

use super::capabilities::Capabilities;
use super::io::Connection;

/// A ready session: between transactions, it may start one or be pooled. Only
/// `Opening::login` makes one, and each step of a transaction consumes it and gives it back
/// only while its connection is usable ([`Step`](super::Step)).
pub(crate) struct Session {
    pub(super) conn: Connection,
    pub(super) caps: Capabilities,
    /// When a transaction last finished (or the session became ready).
    pub(crate) last_used: Instant,
    /// Transactions completed on this connection.
    pub(crate) transactions: u32,
    /// Its slot under the connection cap (this process's, and a shared one's when the cap is
    /// shared), given back when the session quits or is dropped.
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
