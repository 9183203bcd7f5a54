//! One pooled connection's driver, a *lane*: a task that owns the session and runs the
//! messages queued on it in order, as a state machine whose every state is its own type and
//! whose every transition consumes the state it leaves (the session with it):
//!
//! ```text
//!            ┌───────────────────────────────────────────────────────────────┐
//!            ▼                                                               │
//!  Idle ──job──▶ Ready ──begin──▶ EnvelopeWritten ──replies, payload──▶ PayloadWritten
//!   │  ▲           │  │                 ▲                                     │
//!   │  │           │  └──BDAT──▶ BdatWindow ──drained──▶ Idle / Ready         │
//!   │  │           └──not pipelined: the whole transaction──▶ Idle            │
//!   │  └───────────────── final reply, nothing carried ◀──────────────────────┤
//!   │                      final reply, next one's commands carried ──▶ EnvelopeWritten
//!   └──▶ Quit (QUIT)      Ended (connection gone or closed)
//! ```
//!
//! - [`Idle`](state::Idle): nothing in flight; waits for a job (at most the idle timeout) and
//!   probes the quiet connection without a round trip before using it.
//! - [`Ready`](state::Ready): a job chosen, nothing of it written: it goes with `BDAT`
//!   (CHUNKING), as one whole transaction (no PIPELINING, or too many recipients for one
//!   group), or pipelined.
//! - [`EnvelopeWritten`](state::EnvelopeWritten): its MAIL, RCPT and DATA went out (written
//!   alone, or behind the previous message's final `.`); their replies are next.
//! - [`PayloadWritten`](state::PayloadWritten): its final `.` went out, with the next queued
//!   message's commands in the same write (RFC 2920 section 3.1), so a busy connection costs
//!   one round trip per message instead of two.
//! - [`BdatWindow`](state::BdatWindow): up to [`BDAT_WINDOW`](bdat::BDAT_WINDOW) `BDAT … LAST`
//!   transactions written before the oldest is answered (RFC 3030 lets BDAT be pipelined; DATA
//!   must wait for its 354), so through a link with latency a connection carries several
//!   messages per round trip.
//!
//! The states are types in `state.rs`; their transitions sit in `idle.rs` (waiting, starting a
//! message), `data.rs` (DATA) and `bdat.rs` (the window).
//!
//! Each reply is read by the state of the transaction it answers, and each message gets its
//! own [`Outcome`] exactly once (answering consumes the [`Job`]); what a failure means for
//! each message is `verdict`'s to say, from what the server may have received of it. Messages
//! still queued when the connection ends are handed back ([`Outcome::NotStarted`]).
//!
//! The pool owns the lanes through a [`LaneHandle`] and hears of a lane's end through it: a lane
//! that takes no more jobs closes its queue. A lane never calls into the pool.
//!
//! A message whose caller has gone away (its future was dropped) before it started is skipped.
//! A message that started is finished even then: stopping midway would only make it
//! ambiguous.

mod bdat;
mod data;
mod idle;
mod job;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::session::Session;
use job::Queue;
use state::{Idle, Lane, State};

pub(crate) use job::{Job, Outcome};
pub(crate) use state::LaneOptions;

/// The pool's handle on a running lane.
pub(crate) struct LaneHandle {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs given and not answered yet.
    load: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl LaneHandle {
    /// Starts a lane on `session`. `idle` is woken whenever the lane has nothing left to do.
    pub(crate) fn spawn(session: Session, opts: LaneOptions, idle: Arc<Notify>) -> LaneHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let load = Arc::new(AtomicUsize::new(0));
        let queue = Queue::new(rx, load.clone(), idle, session.id());
        let lane = Lane {
            queue,
            opts,
            started: 0,
        };
        LaneHandle {
            jobs: tx,
            load,
            task: tokio::spawn(run(session, lane)),
        }
    }

    /// Jobs queued or running on it.
    pub(crate) fn load(&self) -> usize {
        self.load.load(Ordering::SeqCst)
    }

    /// Queues `job` on the lane; gives it back when the lane takes no more jobs.
    pub(crate) fn give(&self, job: Job) -> Result<(), Job> {
        self.load.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|mpsc::error::SendError(job)| {
            self.load.fetch_sub(1, Ordering::SeqCst);
            job
        })
    }

    /// Whether the lane still takes jobs (it closes its queue when it will end: idle, its
    /// shared slot wanted elsewhere, its connection gone).
    pub(crate) fn takes_jobs(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Lets go of the lane: it finishes what is queued, says QUIT, and ends; returns then.
    pub(crate) async fn finish(self) {
        let LaneHandle { jobs, task, .. } = self;
        drop(jobs);
        let _ = task.await;
    }
}

/// Runs the jobs queued on the lane until the pool lets go of it (message cap, `close`, pool
/// dropped), the connection is idle for `idle_timeout`, or it fails. Then hands back the jobs
/// not started and says QUIT when the connection is still usable (which gives its slot back).
async fn run(session: Session, mut lane: Lane) {
    let mut state = State::Idle(Idle { s: session });
    let end = loop {
        state = match state {
            State::Idle(idle) => idle.next(&mut lane).await,
            State::Ready(ready) => ready.start(&mut lane).await,
            State::EnvelopeWritten(e) => e.read(&mut lane).await,
            State::PayloadWritten(p) => p.finish(&mut lane).await,
            State::BdatWindow(w) => w.step(&mut lane).await,
            State::Quit(s) => break Some(s),
            State::Ended => break None,
        };
    };
    lane.queue.hand_back_rest();
    if let Some(s) = end {
        s.quit().await;
    }
}
