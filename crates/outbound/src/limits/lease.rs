//! [`ConnectionLease`]: one slot of a connection cap, held as long as the connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit};

/// Gives the slot back (in Redis); run by [`ConnectionLease::release`], or spawned on drop.
pub(crate) type Release =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The right to keep one connection open under a cap: this process's
/// ([`LocalSlots`](super::LocalSlots)), a shared one (through Redis), or both joined.
/// [`release`](Self::release) gives the slot back and waits until Redis has it; dropping the
/// lease gives it back in the background (or, with no runtime left, when the lease expires).
/// A slot of this process is given back at once either way.
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
    /// Set by the holder of a shared slot (its renewal).
    close: Option<Arc<AtomicBool>>,
    /// Gives a shared slot back.
    on_drop: Option<Release>,
    /// A slot of this process's cap: back (and its waiters woken) as soon as it is dropped.
    local: Option<LocalSlot>,
}

/// A permit of [`LocalSlots`](super::LocalSlots) and whom to wake when it is given back.
struct LocalSlot {
    permit: Option<OwnedSemaphorePermit>,
    released: Arc<Notify>,
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        // The permit goes back before the waiters wake, so they find it.
        drop(self.permit.take());
        self.released.notify_waiters();
    }
}

impl ConnectionLease {
    /// A lease that holds nothing beyond this process's own cap (no shared limits, or the
    /// fallback while they are unreachable and nothing renews it).
    pub fn unshared() -> Self {
        ConnectionLease {
            close: None,
            on_drop: None,
            local: None,
        }
    }

    /// A shared lease whose holder sets `close` and which runs `on_drop` when released or
    /// dropped (stopping the renewal, giving the slot back).
    pub(crate) fn new(close: Arc<AtomicBool>, on_drop: Release) -> Self {
        ConnectionLease {
            close: Some(close),
            on_drop: Some(on_drop),
            local: None,
        }
    }

    /// A slot of this process's cap: `permit`, and `released` woken when it is given back.
    pub(crate) fn local(permit: OwnedSemaphorePermit, released: Arc<Notify>) -> Self {
        ConnectionLease {
            close: None,
            on_drop: None,
            local: Some(LocalSlot {
                permit: Some(permit),
                released,
            }),
        }
    }

    /// This lease (a slot of this process) and `shared` (the cluster's) held as one, for one
    /// connection: it should close when the shared one says so, and gives both back.
    pub(crate) fn join(mut self, mut shared: ConnectionLease) -> Self {
        if self.on_drop.is_none() {
            self.close = shared.close.take();
            self.on_drop = shared.on_drop.take();
        }
        if self.local.is_none() {
            self.local = shared.local.take();
        }
        self
    }

    /// Whether a slot shared with other processes is part of this lease (then it is worth
    /// asking [`should_close`](Self::should_close) while the connection is idle).
    pub(crate) fn is_shared(&self) -> bool {
        self.on_drop.is_some()
    }

    /// Gives the slot back now; returns once Redis has it back (or could not be told, in
    /// which case the lease expires by itself). A process that exits right after its last
    /// message should close its transport (which releases) rather than drop it.
    pub async fn release(mut self) {
        if let Some(release) = self.on_drop.take() {
            release().await;
        }
        drop(self.local.take());
    }

    /// Whether the connection should be closed once its current message is done.
    pub fn should_close(&self) -> bool {
        self.close
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Acquire))
    }
}

impl Drop for ConnectionLease {
    fn drop(&mut self) {
        if let Some(release) = self.on_drop.take() {
            let giving_back = release();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(giving_back);
            }
        }
        drop(self.local.take());
    }
}

impl fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLease")
            .field("shared", &self.on_drop.is_some())
            .field("local", &self.local.is_some())
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
            Box::new(move || {
                flag.store(true, Ordering::Release);
                Box::pin(async {})
            }),
        );
        close.store(true, Ordering::Release);
        assert!(lease.should_close());
        drop(lease);
        assert!(released.load(Ordering::Acquire));
    }
}
