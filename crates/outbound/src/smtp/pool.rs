//! Reusing SMTP connections, with a hard cap on how many are open.
//!
//! Why a cap on *open* connections, not just on sends in flight: providers count connections.
//! Exchange Online allows 3 concurrent connections per mailbox and answers the 4th with
//! `432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded`; an idle pooled connection
//! counts just like a busy one.
//!
//! How the cap holds: every open connection holds a [`ConnectionLease`] from the pool's one
//! gate ([`Gate`]) from before it is opened until after it is closed: a slot of this process's
//! cap ([`LocalSlots`], `size` of them) and, when the cap is shared with other processes
//! ([`ConnectionSlots`] through Redis), a slot of the shared cap too. A live connection is a
//! *lane* (`smtp::lane`): a task that owns the session and runs the messages queued on it, in
//! order, pipelining the next one's commands behind the previous one's final `.`. A send goes
//! to an idle lane if there is one, else opens a new connection if a slot is free, else queues
//! on the least busy lane — so concurrent sends share connections instead of waiting for one,
//! and the gain of pipelining reaches every caller without a new method.
//!
//! Nothing polls: whoever waits (for a slot of this process, or of the shared cap) wakes on
//! the pool's notification, which a slot given back, a lane started and a lane left idle fire.
//!
//! A lane takes at most `max_messages` messages (then it leaves the list, finishes them and
//! says QUIT), closes itself after `idle_timeout` without work, and probes an idle connection
//! without a round trip before using it ([`Session::probe_idle`]). A connection that failed is
//! never reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::lane::{Job, LaneHandle, LaneOptions, Outcome};
use super::session::Session;
use crate::limits::{ConnectionLease, ConnectionSlots, LocalSlots};
use crate::Error;

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

/// The one gate every connection of the pool opens through (a send's, and `verify`'s): the
/// right to open one comes from here only, as one [`ConnectionLease`].
struct Gate {
    /// This process's cap (`pool_size`); always held.
    local: LocalSlots,
    /// A cap shared with other processes, held within the local one.
    cluster: Option<Arc<dyn ConnectionSlots>>,
}

/// A live connection as the pool sees it.
struct LaneEntry {
    lane: LaneHandle,
    /// Messages given to it so far (at most `max_messages`).
    given: u32,
}

/// Where a send goes.
pub(crate) enum Assignment {
    /// Queued on a live connection; its outcome comes on the job's channel.
    Queued,
    /// No connection could take it: open one with this lease and [`Pool::start_lane`].
    Open(ConnectionLease, Job),
}

pub(crate) struct Pool {
    gate: Gate,
    lanes: Mutex<Vec<LaneEntry>>,
    /// Woken when a slot is given back, a lane starts, or a lane has nothing left to do.
    changed: Arc<Notify>,
    opts: PoolOptions,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.opts.size)
            .field("max_messages", &self.opts.max_messages)
            .field("idle_timeout", &self.opts.idle_timeout)
            .field("connections", &self.lanes().len())
            .finish()
    }
}

impl Pool {
    /// A pool of `opts.size` connections at most, each also holding a slot of `cluster` when
    /// the cap is shared with other processes.
    pub(crate) fn new(opts: PoolOptions, cluster: Option<Arc<dyn ConnectionSlots>>) -> Self {
        let changed = Arc::new(Notify::new());
        Pool {
            gate: Gate {
                local: LocalSlots::notifying(opts.size, changed.clone()),
                cluster,
            },
            lanes: Mutex::new(Vec::new()),
            changed,
            opts,
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn options(&self) -> PoolOptions {
        self.opts
    }

    fn lanes(&self) -> MutexGuard<'_, Vec<LaneEntry>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A number for the next connection (used in logs).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `job` on an idle connection, else gives the caller a lease to open one (a slot
    /// is free), else queues it on the least busy connection; waits when there is none and no
    /// slot. With a shared cap, the lease waits for a shared slot too (see
    /// [`within_cluster`](Self::within_cluster)); an error means none came in time.
    pub(crate) async fn assign(&self, job: Job) -> Result<Assignment, Error> {
        match self.place(job).await {
            Assignment::Open(local, job) => self.within_cluster(local, job).await,
            queued => Ok(queued),
        }
    }

    /// [`assign`](Self::assign) within this process: the lease it gives holds a local slot only.
    async fn place(&self, mut job: Job) -> Assignment {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut lanes = self.lanes();
                // A lane that closed its queue is ending: it takes no more jobs.
                lanes.retain(|l| l.lane.takes_jobs());
                let best = (0..lanes.len()).min_by_key(|&i| lanes[i].lane.load());
                let target = match best {
                    Some(i) if lanes[i].lane.load() == 0 => Some(i),
                    _ => match self.gate.local.try_acquire() {
                        Some(lease) => return Assignment::Open(lease, job),
                        None => best,
                    },
                };
                if let Some(i) = target {
                    match self.give(&mut lanes, i, job) {
                        Ok(()) => return Assignment::Queued,
                        // That lane's driver is gone (it was closing): try again.
                        Err(back) => {
                            job = back;
                            continue;
                        }
                    }
                }
            }
            changed.await;
        }
    }

    /// Adds a shared slot to `local` when the cap is shared. Waiting for it can take long
    /// while this process's own connections carry on: so while it waits, the job goes to one
    /// of them as soon as one starts, has nothing left to do, or another closes (the pool's
    /// notification; it may even hold the very slot waited for), and the local slot is given
    /// back. The first wait is the shared cap's alone, so a free shared slot opens a new
    /// connection rather than queueing behind a busy one.
    async fn within_cluster(&self, local: ConnectionLease, job: Job) -> Result<Assignment, Error> {
        let Some(cluster) = &self.gate.cluster else {
            return Ok(Assignment::Open(local, job));
        };
        let acquire = cluster.acquire();
        tokio::pin!(acquire);
        let mut job = job;
        let mut woken = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if woken {
                match self.queue_on_existing(job) {
                    Ok(()) => return Ok(Assignment::Queued),
                    Err(back) => job = back,
                }
            }
            tokio::select! {
                shared = &mut acquire => return Ok(Assignment::Open(local.join(shared?), job)),
                () = changed => woken = true,
            }
        }
    }

    /// Queues `job` on the least busy live connection, if there is one (a send that waits for
    /// a shared slot, see [`within_cluster`](Self::within_cluster)).
    fn queue_on_existing(&self, mut job: Job) -> Result<(), Job> {
        let mut lanes = self.lanes();
        loop {
            let Some(i) = (0..lanes.len()).min_by_key(|&i| lanes[i].lane.load()) else {
                return Err(job);
            };
            match self.give(&mut lanes, i, job) {
                Ok(()) => return Ok(()),
                Err(back) => job = back, // that lane was closing; it left the list
            }
        }
    }

    /// Puts `job` on lane `i`; a lane that reached its message cap leaves the list (it
    /// finishes what it has and closes), and so does one that takes no more jobs.
    fn give(&self, lanes: &mut Vec<LaneEntry>, i: usize, job: Job) -> Result<(), Job> {
        let entry = &mut lanes[i];
        if let Err(job) = entry.lane.give(job) {
            lanes.remove(i);
            return Err(job);
        }
        entry.given += 1;
        if entry.given >= self.opts.max_messages {
            lanes.remove(i);
        }
        Ok(())
    }

    /// Starts a lane on `session` (opened with a lease from [`assign`](Self::assign)), with
    /// `job` as its first message.
    pub(crate) fn start_lane(&self, session: Session, job: Job) {
        let opts = LaneOptions {
            max_messages: self.opts.max_messages,
            idle_timeout: self.opts.idle_timeout,
        };
        let entry = LaneEntry {
            lane: LaneHandle::spawn(session, opts, self.changed.clone()),
            given: 0,
        };
        let mut lanes = self.lanes();
        lanes.push(entry);
        let last = lanes.len() - 1;
        if let Err(job) = self.give(&mut lanes, last, job) {
            // The lane ended before its first message (its runtime is shutting down).
            job.answer(Outcome::NotStarted);
        }
        drop(lanes);
        self.changed.notify_waiters();
    }

    /// A lease for a connection that must be new (verify), through the same gate: when every
    /// slot of this process is held, an idle connection is closed to free one.
    pub(crate) async fn exclusive_lease(&self) -> Result<ConnectionLease, Error> {
        let local = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(lease) = self.gate.local.try_acquire() {
                break lease;
            }
            let idle = {
                let mut lanes = self.lanes();
                let pos = lanes.iter().position(|l| l.lane.load() == 0);
                pos.map(|p| lanes.remove(p))
            };
            // Dropping its sender ends the lane (QUIT), which gives its slot back.
            drop(idle);
            changed.await;
        };
        match &self.gate.cluster {
            Some(cluster) => Ok(local.join(cluster.acquire().await?)),
            None => Ok(local),
        }
    }

    /// Ends every connection: each finishes what is queued on it and says QUIT. Returns when
    /// they are closed. Later sends open new connections.
    pub(crate) async fn close_all(&self) {
        let lanes: Vec<LaneEntry> = std::mem::take(&mut *self.lanes());
        for entry in lanes {
            entry.lane.finish().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::smtp::session::testing::{open, params, EHLO_PIPE};

    /// A shared cap with never a free slot (every other process holds them).
    #[derive(Debug)]
    struct Full;

    #[async_trait::async_trait]
    impl ConnectionSlots for Full {
        async fn acquire(&self) -> Result<ConnectionLease, Error> {
            std::future::pending().await
        }
        fn describe(&self) -> String {
            "full".into()
        }
    }

    #[tokio::test]
    async fn a_send_waiting_for_a_shared_slot_goes_to_a_lane_of_this_process_once_it_is_free() {
        let opts = PoolOptions {
            size: 2,
            max_messages: 100,
            idle_timeout: Duration::from_secs(30),
        };
        let pool = Pool::new(opts, Some(Arc::new(Full)));
        let (session, mut script, _) =
            open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
        let (first, rx1) = Job::for_test(1, "first");
        pool.start_lane(session.unwrap(), first);
        // The lane is busy and a local slot is free, but the shared cap has none: it waits,
        // and nothing wakes it while the lane stays busy.
        let (second, rx2) = Job::for_test(2, "second");
        let assign = pool.assign(second);
        tokio::pin!(assign);
        let waited = tokio::time::timeout(Duration::from_millis(100), &mut assign).await;
        assert!(waited.is_err(), "it waits while the only lane is busy");
        // The lane answers its message and has nothing left to do: that wakes the send, which
        // goes to it and gives its local slot back.
        let server = async {
            for n in 1..=2 {
                script.expect("MAIL FROM").await;
                script.expect("RCPT TO").await;
                script.expect("DATA").await;
                script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
                script.read_data().await;
                script.say(&format!("250 queued {n}\r\n")).await;
            }
        };
        let (assigned, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(assign, server)
        })
        .await
        .unwrap();
        assert!(matches!(assigned, Ok(Assignment::Queued)));
        for rx in [rx1, rx2] {
            assert!(matches!(rx.await, Ok(Outcome::Done(d)) if d.result.is_ok()));
        }
        let both = (pool.gate.local.try_acquire(), pool.gate.local.try_acquire());
        assert!(
            both.0.is_some() && both.1.is_some(),
            "no local slot is held"
        );
    }
}
