//! A lane between messages: waiting for the next job ([`Idle`]), and starting it ([`Ready`]).

use super::job::{Outcome, Waited};
use super::state::{EnvelopeWritten, Idle, Lane, Ready, State};
use super::{bdat, data};

impl Idle {
    /// Waits for the next job; an idle connection is probed (no round trip) before it carries
    /// one. Idle for too long, or its shared slot wanted elsewhere: it takes no more jobs,
    /// runs those queued meanwhile, and ends.
    pub(super) async fn next(self, lane: &mut Lane) -> State {
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

impl Ready {
    /// Starts the job: with `BDAT` when it goes so, else its envelope commands (all at once
    /// when pipelined, or the whole transaction in one go when not).
    pub(super) async fn start(self, lane: &mut Lane) -> State {
        let Ready { s, job } = self;
        let turn = lane.turn(job, &s);
        if turn.job.goes_with_bdat(&s) {
            return bdat::open(s, turn, lane).await;
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
            Ok(s) => State::EnvelopeWritten(EnvelopeWritten { s, turn }),
            Err(lost) => {
                data::lost(lane, turn.job, turn.reused, lost);
                State::Ended
            }
        }
    }
}
