//! One pooled connection's driver: a task that owns the session and runs the messages queued
//! on it in order. When the server offers PIPELINING, the next queued message's MAIL, RCPT
//! and DATA go out in the same write as the previous message's final `.` (RFC 2920 section
//! 3.1), so a busy connection costs one round trip per message instead of two.
//!
//! Each reply is read by the step of the transaction it answers (`session::pipeline`), and
//! each message gets its own [`Outcome`]:
//! - a refusal (MAIL, every RCPT, DATA, or the final reply) is that message's error; the
//!   connection stays usable (RSET when the transaction was left open);
//! - a connection lost after a message's final `.` was written is Ambiguous for that message
//!   only; a message whose commands were pipelined behind it had no data sent, so it is
//!   answered as safe to resend (`replaceable`), and messages still queued are handed back
//!   ([`Outcome::NotStarted`]) to go to another connection.
//!
//! With CHUNKING ([`bdat_window`]) the messages queued go with `BDAT … LAST`, up to
//! [`BDAT_WINDOW`] transactions written before the oldest is answered (RFC 3030 lets BDAT be
//! pipelined; DATA must wait for its 354), so through a link with latency a connection
//! carries several messages per round trip.
//!
//! A message whose caller has gone away (its future was dropped) before it started is skipped.
//! A message that started is finished even then: stopping midway would only make it
//! ambiguous.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Notify};

use super::pool::{Pool, PoolOptions};
use super::session::{BdatSent, Delivery, Outline, Session};
use super::verdict::{self, End, Reached, Verdict};
use crate::message::PreparedMessage;
use crate::{Error, ErrorKind};

/// One message to send on a connection.
pub(crate) struct Job {
    message: PreparedMessage,
    size: usize,
    eight_bit: bool,
    outcome: oneshot::Sender<Outcome>,
}

impl Job {
    /// A job for `message` (`size` bytes, `eight_bit` when it has 8-bit bytes) and the
    /// channel its outcome comes on.
    pub(crate) fn new(
        message: PreparedMessage,
        size: usize,
        eight_bit: bool,
    ) -> (Job, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            message,
            size,
            eight_bit,
            outcome: tx,
        };
        (job, rx)
    }

    /// Sends the outcome (the caller may have gone away; then nobody needs it).
    pub(crate) fn answer(self, outcome: Outcome) {
        let _ = self.outcome.send(outcome);
    }

    fn wanted(&self) -> bool {
        !self.outcome.is_closed()
    }

    /// Whether this job goes with `BDAT` on `s` (see [`Session::chunks`]).
    fn goes_with_bdat(&self, s: &Session) -> bool {
        s.chunks(self.size, self.message.envelope().to.len())
    }

    fn outline(&self) -> Outline<'_> {
        Outline {
            envelope: self.message.envelope(),
            size: self.size,
            eight_bit: self.eight_bit,
        }
    }
}

/// What became of a job.
pub(crate) enum Outcome {
    /// It ran on the connection.
    Done(Done),
    /// The connection closed before the job started: nothing was sent; send it elsewhere (not
    /// an attempt).
    NotStarted,
}

/// A job that ran.
pub(crate) struct Done {
    pub result: Result<Delivery, Error>,
    /// The connection's number (for logs).
    pub conn: u64,
    /// The connection had carried a transaction before this one.
    pub reused: bool,
    /// Nothing of the message was delivered and the failure was the connection's, not the
    /// message's: it may be sent once more on another connection.
    pub replaceable: bool,
}

/// The driver's view of its lane.
struct Lane {
    conn: u64,
    load: Arc<AtomicUsize>,
    /// Woken when the lane has nothing left to do (its load fell to 0).
    idle: Arc<Notify>,
    pool: Weak<Pool>,
}

impl Lane {
    fn answer(&self, job: Job, outcome: Outcome) {
        self.unload();
        job.answer(outcome);
    }

    /// One job fewer on this lane; the last one makes it idle, which may be what a send
    /// waiting for a connection needs.
    fn unload(&self) {
        if self.load.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn done(&self, job: Job, result: Result<Delivery, Error>, reused: bool, replaceable: bool) {
        let outcome = Outcome::Done(Done {
            result,
            conn: self.conn,
            reused,
            replaceable,
        });
        self.answer(job, outcome);
    }

    /// Answers `job` as `verdict` says.
    fn judged(&self, job: Job, verdict: Verdict, reused: bool) {
        match verdict {
            Verdict::NotStarted => self.answer(job, Outcome::NotStarted),
            Verdict::Failed { error, elsewhere } => self.done(job, Err(error), reused, elsewhere),
            Verdict::Ambiguous(error) => self.done(job, Err(error), reused, false),
        }
    }

    /// A failure of the connection while the message was in flight (its error says whether
    /// its end may have reached the server).
    fn failed_before_data(&self, job: Job, err: Error, reused: bool) {
        let reached = if err.kind() == ErrorKind::Ambiguous {
            Reached::Whole
        } else {
            Reached::Commands
        };
        self.judged(job, verdict::judge(reached, End::Lost(err), reused), reused);
    }

    /// `job`, pipelined behind the message whose connection was just lost: `written` when its
    /// commands went out.
    fn lost_under(&self, job: Job, written: bool) {
        let reached = if written {
            Reached::Commands
        } else {
            Reached::Nothing
        };
        self.judged(job, verdict::judge(reached, End::LostUnder, true), true);
    }

    /// The next queued job whose caller still waits, if one is queued now.
    fn next_wanted(&self, jobs: &mut mpsc::UnboundedReceiver<Job>) -> Option<Job> {
        while let Ok(job) = jobs.try_recv() {
            if job.wanted() {
                return Some(job);
            }
            self.unload();
        }
        None
    }

    fn retire(&self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.retire(self.conn);
        }
    }
}

/// How often an idle connection holding a shared slot checks whether to give it up.
const LEASE_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What waiting for the next job gave.
enum Waited {
    /// A job, or `None`: the pool let go of the lane.
    Job(Option<Job>),
    /// Nothing came within the idle timeout.
    Idle,
    /// The connection holds a shared slot (`crate::limits`) that other processes wait for,
    /// or that was lost: it should close now that it is idle.
    SlotWanted,
}

/// Waits for the next job, at most `idle_timeout`; a connection with a shared lease checks it
/// after each message and at least every [`LEASE_RECHECK`] while idle.
async fn wait_for_job(
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    lease: Option<&crate::limits::ConnectionLease>,
    idle_timeout: std::time::Duration,
) -> Waited {
    let Some(lease) = lease else {
        return match tokio::time::timeout(idle_timeout, jobs.recv()).await {
            Ok(job) => Waited::Job(job),
            Err(_) => Waited::Idle,
        };
    };
    let idle_since = tokio::time::Instant::now();
    loop {
        // A job already queued goes first; an idle connection gives the slot up.
        match jobs.try_recv() {
            Ok(job) => return Waited::Job(Some(job)),
            Err(mpsc::error::TryRecvError::Disconnected) => return Waited::Job(None),
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if lease.should_close() {
            return Waited::SlotWanted;
        }
        let left = idle_timeout.saturating_sub(idle_since.elapsed());
        if left.is_zero() {
            return Waited::Idle;
        }
        if let Ok(job) = tokio::time::timeout(left.min(LEASE_RECHECK), jobs.recv()).await {
            return Waited::Job(job);
        }
    }
}

/// Whether the message just started is this connection's last: its message cap, or other
/// processes wait for the shared slot it holds (then what is queued behind it goes to another
/// connection).
fn ends_here(
    lane: &Lane,
    s: &Session,
    started: u32,
    opts: &PoolOptions,
    retired: &mut bool,
) -> bool {
    let slot_wanted = s.lease.as_ref().is_some_and(|l| l.should_close());
    if slot_wanted && !*retired {
        tracing::debug!(
            conn = lane.conn,
            "closing after this message: other processes wait for its shared slot"
        );
        lane.retire();
        *retired = true;
    }
    started >= opts.max_messages || slot_wanted
}

/// `BDAT` transactions written and not yet answered on one connection, at most. Each costs
/// the server only its queued chunk; more would add lines in doubt when a connection is lost
/// (every one written is Ambiguous then) without saving round trips on any real link.
const BDAT_WINDOW: usize = 16;

/// A `BDAT` transaction in the window.
struct InWindow {
    job: Job,
    reused: bool,
    sent: BdatSent,
}

/// What a window of `BDAT` transactions left.
enum WindowEnd {
    /// Every transaction was answered and the connection is usable; `next` is a queued job
    /// that cannot go with `BDAT` (too large, too many recipients), to run next.
    Drained { next: Option<Job> },
    /// The connection's last message was answered: it is to be closed (QUIT).
    Last,
    /// The connection is lost: every job taken was answered.
    Closed,
}

/// Sends `first` and the jobs queued behind it with `BDAT n LAST` (RFC 3030), up to
/// [`BDAT_WINDOW`] transactions written before the oldest is answered: through a link with
/// latency a connection then carries several messages per round trip, where DATA (which
/// must wait for its 354, RFC 2920) allows one. Replies are read in order, each by the
/// transaction it answers, so a refusal is its own transaction's; every transaction behind
/// another begins with RSET, so a refused one cannot leave its state to the next.
///
/// If the connection is lost, every transaction written and not answered is Ambiguous (the
/// server had each whole message); after a `421` the server processed nothing further, so
/// those behind it are safe to resend.
#[allow(clippy::too_many_arguments)]
async fn bdat_window(
    lane: &Lane,
    s: &mut Session,
    first: Job,
    first_reused: bool,
    mut last: bool,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    started: &mut u32,
    opts: &PoolOptions,
    retired: &mut bool,
) -> WindowEnd {
    let mut window: std::collections::VecDeque<InWindow> = std::collections::VecDeque::new();
    let mut to_write = Some((first, first_reused));
    let mut next_other: Option<Job> = None;
    // The last transaction answered was refused: the server's state is its own to decide.
    let mut unclean = false;
    loop {
        if let Some((job, reused)) = to_write.take() {
            // A small message (BDAT_MAX), joined for the one chunk without keeping a copy.
            let data = job.message.rendered().map(|d| d.to_vec());
            let written = match data {
                Ok(data) => {
                    let reset = unclean || !window.is_empty();
                    s.write_bdat(job.outline(), &data, reset).await
                }
                Err(e) => Err(e.into()),
            };
            match written {
                Ok(sent) => {
                    unclean = false;
                    window.push_back(InWindow { job, reused, sent });
                }
                Err(e) if s.is_usable() => {
                    // Refused before anything was written (or not renderable).
                    *started -= 1;
                    lane.done(job, Err(e), reused, false);
                }
                Err(e) => {
                    // The chunk did not go out whole: nothing of it was delivered.
                    lane.failed_before_data(job, e, reused);
                    lost_window(lane, window, false);
                    return WindowEnd::Closed;
                }
            }
        }
        // More queued messages go out before the oldest reply is read.
        if !last && next_other.is_none() && window.len() < BDAT_WINDOW {
            if let Some(job) = lane.next_wanted(jobs) {
                if job.goes_with_bdat(s) {
                    *started += 1;
                    last = ends_here(lane, s, *started, opts, retired);
                    to_write = Some((job, true));
                    continue;
                }
                next_other = Some(job);
            }
        }
        let Some(oldest) = window.pop_front() else {
            break;
        };
        let result = s
            .read_bdat(oldest.sent, oldest.job.message.envelope())
            .await;
        if !s.is_usable() {
            // 421: the server processed nothing after that reply. Lost: Ambiguous.
            let closed_by_server = matches!(&result, Err(e) if e.smtp_code() == Some(421));
            match result {
                Err(e) if e.kind() == ErrorKind::Ambiguous => {
                    let v = verdict::judge(Reached::Whole, End::Lost(e), oldest.reused);
                    lane.judged(oldest.job, v, oldest.reused);
                }
                // Its own reply (a 421): not delivered.
                Err(e) => {
                    let v = verdict::judge(Reached::Whole, End::Answered(e), oldest.reused);
                    lane.judged(oldest.job, v, oldest.reused);
                }
                Ok(d) => lane.done(oldest.job, Ok(d), oldest.reused, false),
            }
            lost_window(lane, window, closed_by_server);
            if let Some(job) = next_other {
                lane.answer(job, Outcome::NotStarted);
            }
            return WindowEnd::Closed;
        }
        unclean = result.is_err();
        lane.done(oldest.job, result, oldest.reused, false);
    }
    if last {
        if let Some(job) = next_other {
            lane.answer(job, Outcome::NotStarted);
        }
        return WindowEnd::Last;
    }
    if unclean {
        // RFC 3030 leaves the state after a refused chunk to the server: start clean.
        s.reset().await;
        if !s.is_usable() {
            if let Some(job) = next_other {
                lane.answer(job, Outcome::NotStarted);
            }
            return WindowEnd::Closed;
        }
    }
    WindowEnd::Drained { next: next_other }
}

/// Answers the transactions of a window left unanswered when the connection closed: after a
/// `421` (`closed_by_server`) the server processed none of them, so they may go to another
/// connection; after a lost connection each may have been delivered.
fn lost_window(lane: &Lane, window: std::collections::VecDeque<InWindow>, closed_by_server: bool) {
    for w in window {
        let end = if closed_by_server {
            End::ClosedBefore
        } else {
            End::LostUnder
        };
        lane.judged(
            w.job,
            verdict::judge(Reached::Whole, end, w.reused),
            w.reused,
        );
    }
}

/// A queued job: whether its envelope commands already went out behind the previous `.`.
struct Queued {
    job: Job,
    written: bool,
}

/// Runs the jobs sent on `jobs` over `session` until the pool lets go of the lane (message
/// cap, `close`, pool dropped), the connection is idle for `opts.idle_timeout`, or it fails.
/// Then says QUIT when the connection is still usable, hands back jobs not started, and gives
/// the slot back.
pub(crate) async fn drive(
    session: Session,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    load: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pool: Weak<Pool>,
    opts: PoolOptions,
) {
    let lane = Lane {
        conn: session.id(),
        load,
        idle,
        pool,
    };
    let conn = lane.conn;
    let mut started: u32 = 0;
    let mut carried: Option<Queued> = None;
    let mut s = session;
    // Taken out of the pool's list: it only finishes what was queued, then closes.
    let mut retired = false;
    let end: Option<Session> = loop {
        // The transaction to run now: one whose commands went out behind the previous `.`,
        // or the next job (after checking that the idle connection still looks usable).
        let Queued { job, written } = match carried.take() {
            Some(q) => q,
            None => {
                let waited = if retired {
                    Waited::Job(jobs.recv().await)
                } else {
                    let shared = s.lease.as_ref().filter(|l| l.is_shared());
                    wait_for_job(&mut jobs, shared, opts.idle_timeout).await
                };
                let job = match waited {
                    Waited::Job(Some(job)) => job,
                    Waited::Job(None) => break Some(s),
                    Waited::Idle | Waited::SlotWanted => {
                        if matches!(waited, Waited::Idle) {
                            tracing::debug!(conn, "closing a connection idle for too long");
                        } else {
                            tracing::debug!(
                                conn,
                                "closing a connection whose shared slot other processes wait for"
                            );
                        }
                        // No more jobs come; run any that came meanwhile, then close.
                        lane.retire();
                        retired = true;
                        continue;
                    }
                };
                if !job.wanted() {
                    lane.unload();
                    continue;
                }
                if started > 0 && !s.probe_idle() {
                    lane.answer(job, Outcome::NotStarted);
                    break None;
                }
                Queued {
                    job,
                    written: false,
                }
            }
        };
        let reused = started > 0;
        started += 1;
        let last = ends_here(&lane, &s, started, &opts, &mut retired);

        if !written && job.goes_with_bdat(&s) {
            match bdat_window(
                &lane,
                &mut s,
                job,
                reused,
                last,
                &mut jobs,
                &mut started,
                &opts,
                &mut retired,
            )
            .await
            {
                WindowEnd::Drained { next } => {
                    carried = next.map(|job| Queued {
                        job,
                        written: false,
                    });
                    continue;
                }
                WindowEnd::Last => break Some(s),
                WindowEnd::Closed => break None,
            }
        }

        if !written {
            let commands = match s.envelope_commands(job.outline()) {
                Ok(c) => c,
                Err(e) => {
                    // Refused before anything was sent (too large, needs an extension).
                    started -= 1;
                    lane.done(job, Err(e), reused, false);
                    continue;
                }
            };
            let Some(commands) = commands else {
                // Not pipelined (the server does not offer it, or too many recipients for one
                // group): the whole transaction in one go.
                let data = match job.message.rendered() {
                    Ok(data) => data,
                    Err(e) => {
                        lane.done(job, Err(e.into()), reused, false);
                        continue;
                    }
                };
                let o = job.outline();
                let (back, result) = s.transaction(o.envelope, data, o.size, o.eight_bit).await;
                let Some(back) = back else {
                    let replaceable =
                        reused && matches!(&result, Err(e) if e.kind() == ErrorKind::Network);
                    lane.done(job, result, reused, replaceable);
                    break None;
                };
                s = back;
                if last {
                    s.quit().await;
                    lane.done(job, result, reused, false);
                    break None;
                }
                lane.done(job, result, reused, false);
                continue;
            };
            let sent = s.begin(&commands).await;
            drop(commands);
            if let Err(e) = sent {
                lane.failed_before_data(job, e, reused);
                break None;
            }
        }

        // The envelope's replies: MAIL, each RCPT, DATA.
        let accepted = match s.envelope(job.outline().envelope).await {
            Ok(a) => a,
            Err(e) => {
                let usable = s.is_usable();
                if usable {
                    lane.done(job, Err(e), reused, false);
                    if last {
                        break Some(s);
                    }
                    continue;
                }
                lane.failed_before_data(job, e, reused);
                break None;
            }
        };

        // The payload, and behind its final `.` the next queued message's commands.
        let mut next = if last {
            None
        } else {
            lane.next_wanted(&mut jobs)
        };
        let mut next_written = false;
        let outcome = {
            let next_commands = match &next {
                Some(n) => s.envelope_commands(n.outline()),
                None => Ok(None),
            };
            let next_commands = match next_commands {
                Ok(c) => c,
                Err(e) => {
                    // That message cannot go to this server at all: its own error, now.
                    if let Some(n) = next.take() {
                        lane.done(n, Err(e), true, false);
                    }
                    None
                }
            };
            match job.message.rendered() {
                Ok(data) => {
                    let pipelined: &[_] = next_commands.as_deref().unwrap_or(&[]);
                    next_written = !pipelined.is_empty();
                    Ok(s.payload(data, pipelined).await)
                }
                Err(e) => Err(Error::from(e)),
            }
        };
        let written = match outcome {
            Ok(w) => w,
            Err(e) => {
                // Unreachable in practice (the caller rendered the bytes before queueing),
                // but the session is mid-transaction now: it cannot be reused.
                lane.done(job, Err(e), reused, false);
                if let Some(n) = next {
                    lane.answer(n, Outcome::NotStarted);
                }
                break None;
            }
        };
        if let Err(e) = written {
            // Before the `.`: this message's connection failure; from the `.` on: Ambiguous.
            lane.failed_before_data(job, e, reused);
            if let Some(n) = next {
                lane.lost_under(n, next_written);
            }
            break None;
        }
        if next_written {
            s.note_pipelined();
        }

        let result = s.end_of_data(accepted).await;
        if !s.is_usable() {
            match result {
                Err(e) if e.kind() == ErrorKind::Ambiguous => {
                    lane.judged(
                        job,
                        verdict::judge(Reached::Whole, End::Lost(e), reused),
                        reused,
                    );
                }
                // Its own reply (a 421): not delivered.
                Err(e) => {
                    lane.judged(
                        job,
                        verdict::judge(Reached::Whole, End::Answered(e), reused),
                        reused,
                    );
                }
                Ok(d) => lane.done(job, Ok(d), reused, false),
            }
            if let Some(n) = next {
                lane.lost_under(n, next_written);
            }
            break None;
        }
        if last {
            // Closed before the caller hears back, so the cap on open connections is exact
            // from the caller's point of view.
            s.quit().await;
            lane.done(job, result, reused, false);
            break None;
        }
        lane.done(job, result, reused, false);
        carried = next.map(|job| Queued {
            job,
            written: next_written,
        });
    };

    lane.retire();
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        lane.answer(job, Outcome::NotStarted);
    }
    if let Some(s) = end {
        s.quit().await;
    }
}
