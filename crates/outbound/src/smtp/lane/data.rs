//! The DATA states of a lane: a message's envelope written, then its payload and final `.`
//! (with the next queued message's commands behind it), then its final reply.

use super::job::{Job, Outcome, Turn};
use super::state::{Carried, EnvelopeWritten, Idle, Lane, PayloadWritten, Ready, State};
use crate::smtp::session::{Accepted, Delivery, Lost, Session, Step};
use crate::smtp::verdict::{self, End, Reached};
use crate::Error;

impl EnvelopeWritten {
    /// Reads the envelope's replies; when the payload may follow, writes it.
    pub(super) async fn read(self, lane: &mut Lane) -> State {
        let EnvelopeWritten { s, turn } = self;
        match s.envelope(turn.job.envelope()).await {
            Step::Done(s, accepted) => write_payload(s, turn, accepted, lane).await,
            Step::Refused(s, e) => {
                lane.queue.done(turn.job, Err(e), turn.reused);
                if turn.last {
                    State::Quit(s)
                } else {
                    State::Idle(Idle { s })
                }
            }
            Step::Closed(e) => {
                answered_by_421(lane, turn, Reached::Commands, e);
                State::Ended
            }
            Step::Lost(lost) => {
                self::lost(lane, turn.job, turn.reused, lost);
                State::Ended
            }
        }
    }
}

/// Writes `turn`'s payload and final `.`, and behind it the next queued message's commands
/// (unless this is the connection's last message).
async fn write_payload(s: Session, turn: Turn, accepted: Accepted, lane: &mut Lane) -> State {
    let mut next = if turn.last {
        None
    } else {
        lane.queue.next_wanted()
    };
    let next_commands = match &next {
        Some(n) => s.envelope_commands(n.outline()),
        None => Ok(None),
    };
    let next_commands = match next_commands {
        Ok(c) => c,
        Err(e) => {
            // That message cannot go to this server at all: its own error, now.
            if let Some(n) = next.take() {
                lane.queue.done(n, Err(e), true);
            }
            None
        }
    };
    let pipelined = next_commands.as_deref().unwrap_or(&[]);
    let written = !pipelined.is_empty();
    let wrote = match turn.job.data() {
        Ok(data) => s.payload(data, pipelined).await,
        Err(e) => {
            // Unreachable in practice (the caller rendered the bytes before queueing), but the
            // session is mid-transaction now: it cannot be reused.
            drop(next_commands);
            lane.queue.done(turn.job, Err(e), turn.reused);
            if let Some(n) = next {
                lane.queue.answer(n, Outcome::NotStarted);
            }
            return State::Ended;
        }
    };
    drop(next_commands);
    let next = next.map(|job| Carried { job, written });
    match wrote {
        Ok(s) => {
            if written {
                s.note_pipelined();
            }
            State::PayloadWritten(PayloadWritten {
                s,
                turn,
                accepted,
                next,
            })
        }
        Err(failure) => {
            lost(lane, turn.job, turn.reused, failure);
            lost_under(lane, next, End::LostUnder);
            State::Ended
        }
    }
}

impl PayloadWritten {
    /// Reads the final reply; then the message carried behind it, if any, is next.
    pub(super) async fn finish(self, lane: &mut Lane) -> State {
        let PayloadWritten {
            s,
            turn,
            accepted,
            next,
        } = self;
        match s.end_of_data(accepted).await {
            Step::Done(s, delivery) => answered(s, turn, Ok(delivery), next, lane).await,
            Step::Refused(s, e) => answered(s, turn, Err(e), next, lane).await,
            Step::Closed(e) => {
                answered_by_421(lane, turn, Reached::Whole, e);
                lost_under(lane, next, End::ClosedBefore);
                State::Ended
            }
            Step::Lost(failure) => {
                lost(lane, turn.job, turn.reused, failure);
                lost_under(lane, next, End::LostUnder);
                State::Ended
            }
        }
    }
}

/// `turn` was answered and the connection is usable: its last message closes it (before the
/// caller hears back, so the cap on open connections is exact from the caller's point of
/// view); else the message carried behind it goes on.
async fn answered(
    s: Session,
    turn: Turn,
    result: Result<Delivery, Error>,
    next: Option<Carried>,
    lane: &mut Lane,
) -> State {
    if turn.last {
        // Nothing is carried behind a connection's last message.
        debug_assert!(next.is_none());
        s.quit().await;
        lane.queue.done(turn.job, result, turn.reused);
        lost_under(lane, next, End::LostUnder);
        return State::Ended;
    }
    lane.queue.done(turn.job, result, turn.reused);
    match next {
        None => State::Idle(Idle { s }),
        Some(Carried {
            job,
            written: false,
        }) => State::Ready(Ready { s, job }),
        Some(Carried { job, written: true }) => {
            let turn = lane.turn(job, &s);
            State::EnvelopeWritten(EnvelopeWritten { s, turn })
        }
    }
}

/// Not pipelined: the whole transaction in one go (MAIL, RCPT, DATA one at a time).
pub(super) async fn whole(s: Session, turn: Turn, lane: &mut Lane) -> State {
    let step = match turn.job.data() {
        Ok(data) => {
            let o = turn.job.outline();
            s.whole(o.envelope, data, o.size, o.eight_bit).await
        }
        Err(e) => {
            lane.queue.done(turn.job, Err(e), turn.reused);
            return State::Idle(Idle { s });
        }
    };
    match step {
        Step::Done(s, delivery) => answered(s, turn, Ok(delivery), None, lane).await,
        Step::Refused(s, e) => answered(s, turn, Err(e), None, lane).await,
        // A 421 to one of its commands or to its end of data: not delivered either way.
        Step::Closed(e) => {
            answered_by_421(lane, turn, Reached::Commands, e);
            State::Ended
        }
        Step::Lost(failure) => {
            lost(lane, turn.job, turn.reused, failure);
            State::Ended
        }
    }
}

/// Answers `job`, whose connection was lost under it.
pub(super) fn lost(lane: &Lane, job: Job, reused: bool, lost: Lost) {
    let verdict = verdict::judge(lost.reached, End::Lost(lost.error), reused);
    lane.queue.judged(job, verdict, reused);
}

/// Answers `turn`, which the server answered with a `421` (closing the session) once it had
/// `reached` it.
fn answered_by_421(lane: &Lane, turn: Turn, reached: Reached, e: Error) {
    let verdict = verdict::judge(reached, End::Answered(e), turn.reused);
    lane.queue.judged(turn.job, verdict, turn.reused);
}

/// Answers the message carried behind one whose connection ended (`end`).
fn lost_under(lane: &Lane, next: Option<Carried>, end: End) {
    if let Some(n) = next {
        let verdict = verdict::judge(n.reached(), end, true);
        lane.queue.judged(n.job, verdict, true);
    }
}
