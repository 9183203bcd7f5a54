//! A lane's states, each its own type, and what the lane keeps across them. The transitions
//! live beside the phase they run: `idle.rs` (waiting, starting a message), `data.rs` (DATA),
//! `bdat.rs` (the `BDAT` window); each consumes the state it leaves and gives the next.

use std::collections::VecDeque;
use std::time::Duration;

use super::job::{Job, Queue, Turn};
use crate::smtp::session::{Accepted, BdatSent, Session};
use crate::smtp::verdict::Reached;

/// A lane's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneOptions {
    /// Messages per connection; then it says QUIT.
    pub max_messages: u32,
    /// How long the connection may sit unused before it is closed.
    pub idle_timeout: Duration,
}

/// What a lane keeps across its states.
pub(super) struct Lane {
    pub(super) queue: Queue,
    pub(super) opts: LaneOptions,
    /// Messages started on this connection (at most `max_messages`).
    pub(super) started: u32,
}

impl Lane {
    /// Starts `job` as the connection's next message: whether the connection carried one
    /// before, and whether this is its last (its message cap; or other processes wait for its
    /// shared slot, and then it takes no more jobs).
    pub(super) fn turn(&mut self, job: Job, s: &Session) -> Turn {
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
    pub(super) fn unturn(&mut self) {
        self.started -= 1;
    }
}

/// A lane's states; each transition consumes the state it leaves and gives the next.
pub(super) enum State {
    Idle(Idle),
    Ready(Ready),
    EnvelopeWritten(EnvelopeWritten),
    PayloadWritten(PayloadWritten),
    BdatWindow(BdatWindow),
    /// The lane ends: QUIT, once what is still queued was handed back.
    Quit(Session),
    /// The lane ends: the connection is gone (failed) or already closed.
    Ended,
}

/// Nothing in flight on a quiet connection.
pub(super) struct Idle {
    pub(super) s: Session,
}

/// A job chosen, nothing of it written yet.
pub(super) struct Ready {
    pub(super) s: Session,
    pub(super) job: Job,
}

/// A message's MAIL, RCPT and DATA went out; their replies are next.
pub(super) struct EnvelopeWritten {
    pub(super) s: Session,
    pub(super) turn: Turn,
}

/// A queued message taken to follow the one in flight.
pub(super) struct Carried {
    pub(super) job: Job,
    /// Its commands went out behind the previous message's final `.`.
    pub(super) written: bool,
}

impl Carried {
    /// What the server may have of it: at most its commands (its data goes only after their
    /// replies).
    pub(super) fn reached(&self) -> Reached {
        if self.written {
            Reached::Commands
        } else {
            Reached::Nothing
        }
    }
}

/// A message's payload and final `.` went out (with `next`'s commands in the same write, when
/// pipelined); its final reply is next.
pub(super) struct PayloadWritten {
    pub(super) s: Session,
    pub(super) turn: Turn,
    pub(super) accepted: Accepted,
    pub(super) next: Option<Carried>,
}

/// `BDAT` transactions in flight on a usable connection.
pub(super) struct BdatWindow {
    pub(super) s: Session,
    /// Written, not answered yet, oldest first.
    pub(super) in_flight: VecDeque<InFlight>,
    /// The last transaction answered was refused: the server's state is its own to decide,
    /// so what is written next begins with RSET, and a drained window ends with one.
    pub(super) unclean: bool,
    /// A queued job that cannot go with `BDAT` (too large, too many recipients): it runs once
    /// the window is drained.
    pub(super) other: Option<Job>,
    /// The connection's last message was taken: no more are.
    pub(super) last: bool,
}

/// A `BDAT` transaction written and not answered yet.
pub(super) struct InFlight {
    pub(super) job: Job,
    pub(super) reused: bool,
    pub(super) sent: BdatSent,
}
