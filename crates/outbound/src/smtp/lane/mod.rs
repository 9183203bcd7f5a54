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
//! - [`Idle`]: nothing in flight; waits for a job (at most the idle timeout) and probes the
//!   quiet connection without a round trip before using it.
//! - [`Ready`]: a job chosen, nothing of it written: it goes with `BDAT` (CHUNKING), as one
//!   whole transaction (no PIPELINING, or too many recipients for one group), or pipelined.
//! - [`EnvelopeWritten`](data::EnvelopeWritten): its MAIL, RCPT and DATA went out (written
//!   alone, or behind the previous message's final `.`); their replies are next.
//! - [`PayloadWritten`](data::PayloadWritten): its final `.` went out, with the next queued
//!   message's commands in the same write (RFC 2920 section 3.1), so a busy connection costs
//!   one round trip per message instead of two.
//! - [`BdatWindow`](bdat::BdatWindow): up to [`BDAT_WINDOW`](bdat::BDAT_WINDOW) `BDAT … LAST`
//!   transactions written before the oldest is answered (RFC 3030 lets BDAT be pipelined; DATA
//!   must wait for its 354), so through a link with latency a connection carries several
//!   messages per round trip.
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
mod job;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::session::Session;
use job::{Queue, Turn, Waited};

pub(crate) use job::{Job, Outcome};

/// A lane's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneOptions {
    /// Messages per connection; then it says QUIT.
    pub max_messages: u32,
    /// How long the connection may sit unused before it is closed.
    pub idle_timeout: Duration,
}

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

/// What a lane keeps across its states.
struct Lane {
    queue: Queue,
    opts: LaneOptions,
    /// Messages started on this connection (at most `max_messages`).
    started: u32,
}

impl Lane {
    /// Starts `job` as the connection's next message: whether the connection carried one
    /// before, and whether this is its last (its message cap; or other processes wait for its
    /// shared slot, and then it takes no more jobs).
    fn turn(&mut self, job: Job, s: &Session) -> Turn {
        let reused = self.started > 0;
        self.started += 1;
        let slot_wanted = s.lease.as_ref().is_some_and(|l| l.should_close());
        if slot_wanted && !self.queue.is_closed() {
            tracing::debug!(
                conn = self.queue.conn,
                "closing after this message: other processes wait for its shared slot"
            );
            self.queue.close();
        }
        Turn {
            job,
            reused,
            last: self.started >= self.opts.max_messages || slot_wanted,
        }
    }

    /// [`turn`](Self::turn) taken back: the message was refused before anything of it was
    /// written, so it does not count against the connection's cap.
    fn unturn(&mut self) {
        self.started -= 1;
    }
}

/// A lane's states; each transition consumes the state it leaves and gives the next.
enum State {
    Idle(Idle),
    Ready(Ready),
    EnvelopeWritten(data::EnvelopeWritten),
    PayloadWritten(data::PayloadWritten),
    BdatWindow(bdat::BdatWindow),
    /// The lane ends: QUIT, once what is still queued was handed back.
    Quit(Session),
    /// The lane ends: the connection is gone (failed) or already closed.
    Ended,
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

/// Nothing in flight on a quiet connection.
struct Idle {
    s: Session,
}

impl Idle {
    /// Waits for the next job; an idle connection is probed (no round trip) before it carries
    /// one. Idle for too long, or its shared slot wanted elsewhere: it takes no more jobs,
    /// runs those queued meanwhile, and ends.
    async fn next(self, lane: &mut Lane) -> State {
        let Idle { mut s } = self;
        let conn = lane.queue.conn;
        loop {
            let lease = s.lease.as_ref();
            match lane.queue.wait(lease, lane.opts.idle_timeout).await {
                Waited::Job(job) => {
                    if lane.started > 0 && !s.probe_idle() {
                        lane.queue.answer(job, Outcome::NotStarted);
                        return State::Ended;
                    }
                    return State::Ready(Ready { s, job });
                }
                Waited::Closed => return State::Quit(s),
                Waited::Idle => {
                    tracing::debug!(conn, "closing a connection idle for too long");
                    lane.queue.close();
                }
                Waited::SlotWanted => {
                    tracing::debug!(
                        conn,
                        "closing a connection whose shared slot other processes wait for"
                    );
                    lane.queue.close();
                }
            }
        }
    }
}

/// A job chosen, nothing of it written yet.
struct Ready {
    s: Session,
    job: Job,
}

impl Ready {
    /// Starts the job: with `BDAT` when it goes so, else its envelope commands (all at once
    /// when pipelined, or the whole transaction in one go when not).
    async fn start(self, lane: &mut Lane) -> State {
        let Ready { s, job } = self;
        let turn = lane.turn(job, &s);
        if turn.job.goes_with_bdat(&s) {
            return bdat::BdatWindow::open(s, turn, lane).await;
        }
        let begun = match s.envelope_commands(turn.job.outline()) {
            // Not pipelined (the server does not offer it, or too many recipients for one
            // group): the whole transaction in one go.
            Ok(None) => return data::whole(s, turn, lane).await,
            Ok(Some(commands)) => s.begin(&commands).await,
            Err(e) => {
                // Refused before anything was sent (too large, needs an extension).
                lane.unturn();
                lane.queue.done(turn.job, Err(e), turn.reused);
                return State::Idle(Idle { s });
            }
        };
        match begun {
            Ok(s) => State::EnvelopeWritten(data::EnvelopeWritten { s, turn }),
            Err(lost) => {
                data::lost(lane, turn.job, turn.reused, lost);
                State::Ended
            }
        }
    }
}
