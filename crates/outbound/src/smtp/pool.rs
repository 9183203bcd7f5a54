//! Reusing SMTP connections, with a hard cap on how many are open.
//!
//! Why a cap on *open* connections, not just on sends in flight: providers count connections.
//! Exchange Online allows 3 concurrent connections per mailbox and answers the 4th with
//! `432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded`; an idle pooled connection
//! counts just like a busy one.
//!
//! How the cap holds: a [`Slot`] (a semaphore permit, `size` of them) is needed to use a
//! connection. A slot holder takes an idle connection when there is one and opens a new one
//! only when the idle list is empty. Every open connection is either idle or held by exactly one
//! slot holder, and a holder opens a connection only when none is idle, i.e. when every open
//! connection belongs to another holder — so at most `size` are ever open. Retiring a
//! connection (QUIT) happens while its slot is still held, and the idle reaper takes a slot for
//! each connection it closes, so closing never overlaps with a replacement being opened.
//!
//! Idle connections are checked without a round trip before use ([`Session::probe_idle`]: the
//! server closed it, or said `421` before closing). A connection is retired after
//! `max_messages` transactions and closed after `idle_timeout` unused. A connection that failed
//! is never returned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::session::Session;
use crate::{Error, ErrorKind};

/// Pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolOptions {
    /// Connections open at once, at most.
    pub size: usize,
    /// Transactions per connection before it is closed and replaced.
    pub max_messages: u32,
    /// How long a connection may sit unused before it is closed.
    pub idle_timeout: Duration,
}

/// The right to use (or open) one connection.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub(crate) struct Pool {
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Session>>,
    opts: PoolOptions,
    reaper: AtomicBool,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.opts.size)
            .field("max_messages", &self.opts.max_messages)
            .field("idle_timeout", &self.opts.idle_timeout)
            .field("idle", &self.idle().len())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(opts: PoolOptions) -> Self {
        Pool {
            slots: Arc::new(Semaphore::new(opts.size.max(1))),
            idle: Mutex::new(Vec::new()),
            opts,
            reaper: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn options(&self) -> PoolOptions {
        self.opts
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Session>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A number for the next connection (used in logs).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for a slot (there are `size`).
    pub(crate) async fn slot(self: &Arc<Self>) -> Result<Slot, Error> {
        self.start_reaper();
        // The semaphore is never closed, so this does not fail in practice.
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| {
            Error::new(ErrorKind::Network, "the SMTP connection pool was shut down")
        })?;
        Ok(Slot { _permit: permit })
    }

    /// An idle connection that still looks usable, if any (most recently used first). Stale
    /// ones are closed on the way; the caller holds `_slot` while that happens.
    pub(crate) async fn take_idle(&self, _slot: &Slot) -> Option<Session> {
        // Idle connections a shared cap wants closed (others wait, or the slot was lost).
        let released: Vec<Session> = {
            let mut idle = self.idle();
            let (close, keep) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(Session::lease_says_close);
            *idle = keep;
            close
        };
        for session in released {
            session.quit().await;
        }
        loop {
            let candidate = self.idle().pop()?;
            let mut session = candidate;
            if session.last_used.elapsed() >= self.opts.idle_timeout {
                tracing::debug!(
                    conn = session.id(),
                    "closing a connection idle for too long"
                );
                session.quit().await;
                continue;
            }
            if session.probe_idle() {
                return Some(session);
            }
            // Broken: dropped here (its socket closes), the message is not affected.
        }
    }

    /// Closes one idle connection, if there is one, so the caller (holding `_slot`) may open a
    /// fresh connection without exceeding the cap even though idle ones exist. Used by
    /// `verify()`, which must authenticate on a new connection.
    pub(crate) async fn retire_one_idle(&self, _slot: &Slot) {
        let oldest = {
            let mut idle = self.idle();
            (!idle.is_empty()).then(|| idle.remove(0))
        };
        if let Some(session) = oldest {
            session.quit().await;
        }
    }

    /// Gives a connection back after use: kept while under its message cap, closed politely
    /// when it reached the cap (a connection that failed never comes back: the transaction
    /// drops it). Called while the slot is still held.
    pub(crate) async fn give_back(&self, session: Session, _slot: &Slot) {
        if session.transactions >= self.opts.max_messages || session.lease_says_close() {
            tracing::debug!(
                conn = session.id(),
                transactions = session.transactions,
                "connection reached its message cap; closing it"
            );
            session.quit().await;
            return;
        }
        self.idle().push(session);
    }

    /// Closes every idle connection (QUIT). Connections in use are closed when given back only
    /// if they fail or reach their cap; this is for shutdown.
    pub(crate) async fn close_idle(&self) {
        let sessions: Vec<Session> = std::mem::take(&mut *self.idle());
        for s in sessions {
            s.quit().await;
        }
    }

    /// Starts (once) a background task that closes connections left idle past
    /// `idle_timeout`, so a quiet application does not keep sockets open forever. It holds only
    /// a weak reference and ends with the pool.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.reaper.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Pool> = Arc::downgrade(self);
        // At least every second: a shared cap's idle connection must go soon when others wait.
        let period =
            (self.opts.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
        handle.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.reap().await;
            }
        });
    }

    async fn reap(&self) {
        let now = Instant::now();
        loop {
            // Take a slot so closing never overlaps a replacement being opened.
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                return;
            };
            let expired = {
                let mut idle = self.idle();
                let pos = idle.iter().position(|s| {
                    now.duration_since(s.last_used) >= self.opts.idle_timeout
                        || s.lease_says_close()
                });
                pos.map(|p| idle.remove(p))
            };
            let Some(session) = expired else { return };
            tracing::debug!(conn = session.id(), "closing an idle connection");
            session.quit().await;
            drop(permit);
        }
    }
}
