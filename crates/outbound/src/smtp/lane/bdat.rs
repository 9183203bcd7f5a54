//! The lane's `BDAT` window: the queued messages go with `BDAT n LAST` (RFC 3030), up to
//! [`BDAT_WINDOW`] transactions written before the oldest is answered. Through a link with
//! latency a connection then carries several messages per round trip, where DATA (which must
//! wait for its 354, RFC 2920) allows one. Replies are read in order, each by the transaction
//! it answers, so a refusal is its own transaction's; every transaction written behind another
//! begins with RSET, so a refused one cannot leave its state to the next.
//!
//! If the connection is lost, every transaction written and not answered is Ambiguous (the
//! server had each whole message); after a `421` the server processed nothing further, so
//! those behind it are safe to resend (`verdict`).

use std::collections::VecDeque;

use super::job::{Job, Outcome, Turn};
use super::state::{BdatWindow, Idle, InFlight, Lane, Ready, State};
use crate::smtp::session::{Lost, Session, Step};
use crate::smtp::verdict::{self, End, Reached};

/// `BDAT` transactions written and not yet answered on one connection, at most. Each costs
/// the server only its queued chunk; more would add lines in doubt when a connection is lost
/// (every one written is Ambiguous then) without saving round trips on any real link.
pub(super) const BDAT_WINDOW: usize = 16;

/// A window on `s`, with `turn`'s message written first.
pub(super) async fn open(s: Session, turn: Turn, lane: &mut Lane) -> State {
    let window = BdatWindow {
        s,
        in_flight: VecDeque::new(),
        unclean: false,
        other: None,
        last: turn.last,
    };
    window.write(turn, lane).await
}

impl BdatWindow {
    /// One step: write the next queued message while the window has room, else read the
    /// oldest transaction's replies, else (drained) leave the window.
    pub(super) async fn step(mut self, lane: &mut Lane) -> State {
        if let Some(turn) = self.take_next(lane) {
            return self.write(turn, lane).await;
        }
        match self.in_flight.pop_front() {
            Some(oldest) => self.read(oldest, lane).await,
            None => self.drained(lane).await,
        }
    }

    /// The next queued message, if it goes into the window now.
    fn take_next(&mut self, lane: &mut Lane) -> Option<Turn> {
        if self.last || self.other.is_some() || self.in_flight.len() >= BDAT_WINDOW {
            return None;
        }
        let job = lane.queue.next_wanted()?;
        if !job.goes_with_bdat(&self.s) {
            self.other = Some(job);
            return None;
        }
        let turn = lane.turn(job, &self.s);
        self.last = turn.last;
        Some(turn)
    }

    /// Writes `turn`'s transaction (MAIL, RCPT, `BDAT … LAST` and the message, in one write;
    /// behind another transaction or a refusal, beginning with RSET).
    async fn write(self, turn: Turn, lane: &mut Lane) -> State {
        let BdatWindow {
            s,
            mut in_flight,
            unclean,
            other,
            last,
        } = self;
        let reset = unclean || !in_flight.is_empty();
        // A small message (at most `BDAT_MAX`), joined for its one chunk.
        let step = match turn.job.data() {
            Ok(data) => {
                let data = data.to_vec();
                s.write_bdat(turn.job.outline(), &data, reset).await
            }
            Err(e) => Step::Refused(s, e),
        };
        let (s, unclean) = match step {
            Step::Done(s, sent) => {
                in_flight.push_back(InFlight {
                    job: turn.job,
                    reused: turn.reused,
                    sent,
                });
                (s, false)
            }
            Step::Refused(s, e) => {
                // Refused before anything was written (or not renderable).
                lane.unturn();
                lane.queue.done(turn.job, Err(e), turn.reused);
                (s, unclean)
            }
            // A write reads no reply, so no 421 can come here; should one have, it is the
            // server's answer.
            Step::Closed(e) => {
                let verdict = verdict::judge(Reached::Whole, End::Answered(e), turn.reused);
                lane.queue.judged(turn.job, verdict, turn.reused);
                unanswered(lane, in_flight, false);
                hand_back(lane, other);
                return State::Ended;
            }
            Step::Lost(lost) => return ended(lane, turn.job, turn.reused, lost, in_flight, other),
        };
        State::BdatWindow(BdatWindow {
            s,
            in_flight,
            unclean,
            other,
            last,
        })
    }

    /// Reads the replies of the `oldest` transaction.
    async fn read(self, oldest: InFlight, lane: &mut Lane) -> State {
        let BdatWindow {
            s,
            in_flight,
            other,
            last,
            ..
        } = self;
        let InFlight { job, reused, sent } = oldest;
        let step = s.read_bdat(sent, job.envelope()).await;
        let (s, unclean) = match step {
            Step::Done(s, delivery) => {
                lane.queue.done(job, Ok(delivery), reused);
                (s, false)
            }
            Step::Refused(s, e) => {
                lane.queue.done(job, Err(e), reused);
                (s, true)
            }
            // The server closed the session in reply to this transaction: it processed
            // nothing after, so the transactions behind it are safe to resend.
            Step::Closed(e) => {
                let verdict = verdict::judge(Reached::Whole, End::Answered(e), reused);
                lane.queue.judged(job, verdict, reused);
                unanswered(lane, in_flight, true);
                hand_back(lane, other);
                return State::Ended;
            }
            Step::Lost(lost) => return ended(lane, job, reused, lost, in_flight, other),
        };
        State::BdatWindow(BdatWindow {
            s,
            in_flight,
            unclean,
            other,
            last,
        })
    }

    /// Every transaction was answered: the connection's last message closes it; else, after a
    /// refusal, RSET starts clean, and the job that could not go with `BDAT` runs next.
    async fn drained(self, lane: &mut Lane) -> State {
        let BdatWindow {
            s,
            unclean,
            other,
            last,
            ..
        } = self;
        if last {
            hand_back(lane, other);
            return State::Quit(s);
        }
        let s = if unclean {
            // RFC 3030 leaves the state after a refused chunk to the server: start clean.
            match s.start_clean().await {
                Some(s) => s,
                None => {
                    hand_back(lane, other);
                    return State::Ended;
                }
            }
        } else {
            s
        };
        match other {
            Some(job) => State::Ready(Ready { s, job }),
            None => State::Idle(Idle { s }),
        }
    }
}

/// The connection was lost under `job`'s transaction: `job` is judged by its own failure,
/// the transactions still in flight (each written whole) as lost under it, and a job waiting
/// for the window is handed back.
fn ended(
    lane: &Lane,
    job: Job,
    reused: bool,
    lost: Lost,
    in_flight: VecDeque<InFlight>,
    other: Option<Job>,
) -> State {
    super::data::lost(lane, job, reused, lost);
    unanswered(lane, in_flight, false);
    hand_back(lane, other);
    State::Ended
}

/// Answers the transactions left unanswered when the connection ended: each was written
/// whole; `closed`: the server said `421` before them (and processed nothing after).
fn unanswered(lane: &Lane, in_flight: VecDeque<InFlight>, closed: bool) {
    for w in in_flight {
        let end = if closed {
            End::ClosedBefore
        } else {
            End::LostUnder
        };
        let verdict = verdict::judge(Reached::Whole, end, w.reused);
        lane.queue.judged(w.job, verdict, w.reused);
    }
}

fn hand_back(lane: &Lane, job: Option<Job>) {
    if let Some(job) = job {
        lane.queue.answer(job, Outcome::NotStarted);
    }
}
