//! [`ConnectionLease`]: one slot of a shared connection cap, held as long as the connection.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The right to keep one connection open under a shared cap. Dropping it gives the slot
/// back (at once when Redis answers, else when the lease expires).
///
/// [`should_close`](Self::should_close) turns true when the connection should be closed after
/// its current message: other processes are waiting for a slot (fairness), or the slot was
/// lost (Redis restarted, or the lease was granted while Redis was unreachable and no slot is
/// free now that it answers).
///
/// ```
/// use outbound::limits::ConnectionLease;
/// let lease = ConnectionLease::unshared();
/// assert!(!lease.should_close());
/// ```
pub struct ConnectionLease {
    close: Arc<AtomicBool>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl ConnectionLease {
    /// A lease that holds nothing beyond this process's own cap (no shared limits, or the
    /// fallback while they are unreachable and nothing renews it).
    pub fn unshared() -> Self {
        ConnectionLease {
            close: Arc::new(AtomicBool::new(false)),
            on_drop: None,
        }
    }

    /// A lease whose holder sets `close` and which runs `on_drop` when dropped (stopping the
    /// renewal, giving the slot back).
    pub(crate) fn new(close: Arc<AtomicBool>, on_drop: Box<dyn FnOnce() + Send + Sync>) -> Self {
        ConnectionLease {
            close,
            on_drop: Some(on_drop),
        }
    }

    /// Whether the connection should be closed once its current message is done.
    pub fn should_close(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionLease {
    fn drop(&mut self) {
        if let Some(release) = self.on_drop.take() {
            release();
        }
    }
}

impl fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLease")
            .field("shared", &self.on_drop.is_some())
            .field("should_close", &self.should_close())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_releases_once() {
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let close = Arc::new(AtomicBool::new(false));
        let lease = ConnectionLease::new(
            close.clone(),
            Box::new(move || flag.store(true, Ordering::Release)),
        );
        close.store(true, Ordering::Release);
        assert!(lease.should_close());
        drop(lease);
        assert!(released.load(Ordering::Acquire));
    }
}
