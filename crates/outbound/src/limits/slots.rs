//! [`ConnectionSlots`], the seam every connection cap is held through, and [`LocalSlots`], the
//! connection cap of one process, its default.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::lease::ConnectionLease;
use crate::Error;

/// A connection cap: the SMTP pool takes a lease before opening a connection and keeps it
/// with the connection. Two implementations: [`LocalSlots`], this process's cap (every pool
/// has one, of `pool_size`), and the cap shared with other processes through Redis
/// (`SharedLimits::connection_slots`, feature `shared-limits`), which a pool holds within
/// its own (a connection then holds a slot of each, as one lease).
#[async_trait]
pub trait ConnectionSlots: Send + Sync + fmt::Debug {
    /// A slot if one is free now, without waiting and without a round trip; `None` when every
    /// slot is held, or when the implementation can tell only by asking (Redis): then
    /// [`acquire`](Self::acquire).
    fn try_acquire(&self) -> Option<ConnectionLease> {
        None
    }

    /// Waits for a slot (bounded, for a shared cap). Dropping the lease gives the slot back.
    async fn acquire(&self) -> Result<ConnectionLease, Error>;

    /// E.g. `3 connections shared through redis://127.0.0.1:6379/`.
    fn describe(&self) -> String;
}

/// At most `n` connections open at once in this process: a semaphore, one permit per open
/// connection, held in its [`ConnectionLease`]. Giving a slot back wakes whoever waits for
/// one ([`notify`](Self::notify)), so nothing polls for a free slot.
///
/// ```
/// use outbound::limits::{ConnectionSlots, LocalSlots};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let slots = LocalSlots::new(1);
/// let lease = slots.acquire().await?;
/// assert!(slots.try_acquire().is_none(), "the only slot is held");
/// drop(lease);
/// assert!(slots.try_acquire().is_some());
/// assert_eq!(slots.describe(), "1 connection in this process");
/// # Ok(()) }
/// ```
pub struct LocalSlots {
    size: usize,
    free: Arc<Semaphore>,
    released: Arc<Notify>,
}

impl LocalSlots {
    /// A cap of `size` connections (at least 1).
    pub fn new(size: usize) -> Self {
        LocalSlots::notifying(size, Arc::new(Notify::new()))
    }

    /// A cap whose released slots wake `released`'s waiters (the pool's own notification,
    /// which other events wake as well).
    pub(crate) fn notifying(size: usize, released: Arc<Notify>) -> Self {
        let size = size.max(1);
        LocalSlots {
            size,
            free: Arc::new(Semaphore::new(size)),
            released,
        }
    }

    /// Woken whenever a slot is given back: wait on `notify().notified()` (enabled before
    /// trying [`try_acquire`](ConnectionSlots::try_acquire), so no release is missed).
    pub fn notify(&self) -> &Arc<Notify> {
        &self.released
    }

    fn lease(&self, permit: OwnedSemaphorePermit) -> ConnectionLease {
        ConnectionLease::local(permit, self.released.clone())
    }
}

#[async_trait]
impl ConnectionSlots for LocalSlots {
    fn try_acquire(&self) -> Option<ConnectionLease> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        Some(self.lease(permit))
    }

    /// Waits, without a bound, until a slot of this process is free.
    async fn acquire(&self) -> Result<ConnectionLease, Error> {
        match self.free.clone().acquire_owned().await {
            Ok(permit) => Ok(self.lease(permit)),
            // The semaphore is never closed; an error would mean it was.
            Err(_) => Err(Error::new(
                crate::ErrorKind::Network,
                "internal: the connection slots were closed",
            )),
        }
    }

    fn describe(&self) -> String {
        let s = if self.size == 1 { "" } else { "s" };
        format!("{} connection{s} in this process", self.size)
    }
}

impl fmt::Debug for LocalSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSlots")
            .field("size", &self.size)
            .field("free", &self.free.available_permits())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_released_slot_wakes_a_waiter_without_polling() {
        let slots = Arc::new(LocalSlots::new(1));
        let held = slots.try_acquire().unwrap();
        let notify = slots.notify().clone();
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        // The notification fired with the release, and the waiter got the slot.
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .unwrap();
        waiter.await.unwrap().unwrap();
        assert!(
            slots.try_acquire().is_some(),
            "the waiter's lease was dropped"
        );
    }

    #[tokio::test]
    async fn a_lease_joined_with_a_shared_one_gives_both_back() {
        let local = LocalSlots::new(1);
        let shared_released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = shared_released.clone();
        let close = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = ConnectionLease::new(
            close.clone(),
            Box::new(move || {
                flag.store(true, std::sync::atomic::Ordering::Release);
                Box::pin(async {})
            }),
        );
        let lease = local.try_acquire().unwrap().join(shared);
        assert!(lease.is_shared());
        assert!(!lease.should_close());
        close.store(true, std::sync::atomic::Ordering::Release);
        assert!(lease.should_close(), "the shared part asks to close");
        lease.release().await;
        assert!(shared_released.load(std::sync::atomic::Ordering::Acquire));
        assert!(local.try_acquire().is_some(), "the local slot is back");
    }
}
