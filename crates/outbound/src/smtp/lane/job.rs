//! What a lane carries: [`Job`]s, each answered once with an [`Outcome`], and the lane's end of
//! its queue ([`Queue`]), which counts the jobs not answered yet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::limits::ConnectionLease;
use crate::message::{Envelope, PreparedMessage, RenderedMessage};
use crate::smtp::session::{Delivery, Outline, Session};
use crate::smtp::verdict::Verdict;
use crate::Error;

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

    /// A job for a test: a small message from `a@example.com` to `user{n}@example.com`.
    #[cfg(test)]
    pub(crate) fn for_test(n: usize, text: &str) -> (Job, oneshot::Receiver<Outcome>) {
        let message = crate::Message::builder()
            .from("a@example.com")
            .to(format!("user{n}@example.com"))
            .subject(format!("m{n}"))
            .text(text)
            .build()
            .and_then(|m| m.prepare(None))
            .unwrap_or_else(|e| panic!("a test message: {e}"));
        let (size, eight_bit) = match message.rendered() {
            Ok(r) => (r.len(), !r.is_ascii()),
            Err(e) => panic!("a test message: {e}"),
        };
        Job::new(message, size, eight_bit)
    }

    /// Sends the outcome (the caller may have gone away; then nobody needs it). Consumes the
    /// job: nothing is answered twice.
    pub(crate) fn answer(self, outcome: Outcome) {
        let _ = self.outcome.send(outcome);
    }

    /// Whether its caller still waits for it.
    pub(super) fn wanted(&self) -> bool {
        !self.outcome.is_closed()
    }

    /// Whether it goes with `BDAT` on `s` (see [`Session::chunks`]).
    pub(super) fn goes_with_bdat(&self, s: &Session) -> bool {
        s.chunks(self.size, self.message.envelope().to.len())
    }

    pub(super) fn outline(&self) -> Outline<'_> {
        Outline {
            envelope: self.message.envelope(),
            size: self.size,
            eight_bit: self.eight_bit,
        }
    }

    pub(super) fn envelope(&self) -> &Envelope {
        self.message.envelope()
    }

    /// The rendered message (rendered before it was queued, so this does not fail in
    /// practice).
    pub(super) fn data(&self) -> Result<&RenderedMessage, Error> {
        self.message.rendered().map_err(Error::from)
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

/// A job taken from the queue, with what its connection had done before it.
pub(super) struct Turn {
    pub job: Job,
    /// The connection had carried a message before this one.
    pub reused: bool,
    /// This is the connection's last message: QUIT after it, take no more.
    pub last: bool,
}

/// The lane's end of its queue: the jobs the pool gave it, counted until answered, so the pool
/// can tell an idle lane from a busy one. The lane closes it to take no more (the pool sees
/// that and drops the lane from its list): the pool is told through the queue, and the lane
/// never calls into the pool.
pub(super) struct Queue {
    jobs: mpsc::UnboundedReceiver<Job>,
    load: Arc<AtomicUsize>,
    /// Woken when the lane has nothing left to do (its load fell to 0).
    idle: Arc<Notify>,
    closed: bool,
    /// The connection's number, for answers and logs.
    pub conn: u64,
}

/// What waiting for the next job gave.
pub(super) enum Waited {
    /// A job.
    Job(Job),
    /// No more jobs come (the pool let go of the lane, or the lane closed its queue and every
    /// job queued before was taken).
    Closed,
    /// Nothing came within the idle timeout.
    Idle,
    /// The connection holds a shared slot (`crate::limits`) that other processes wait for,
    /// or that was lost: it should close now that it is idle.
    SlotWanted,
}

/// How often an idle connection holding a shared slot checks whether to give it up.
const LEASE_RECHECK: Duration = Duration::from_secs(1);

impl Queue {
    pub(super) fn new(
        jobs: mpsc::UnboundedReceiver<Job>,
        load: Arc<AtomicUsize>,
        idle: Arc<Notify>,
        conn: u64,
    ) -> Self {
        Queue {
            jobs,
            load,
            idle,
            closed: false,
            conn,
        }
    }

    /// Answers `job`.
    pub(super) fn answer(&self, job: Job, outcome: Outcome) {
        self.unload();
        job.answer(outcome);
    }

    /// Answers `job` with `result`, its own.
    pub(super) fn done(&self, job: Job, result: Result<Delivery, Error>, reused: bool) {
        self.answer(job, self.ran(result, reused, false));
    }

    /// Answers `job` as `verdict` says.
    pub(super) fn judged(&self, job: Job, verdict: Verdict, reused: bool) {
        let outcome = match verdict {
            Verdict::NotStarted => Outcome::NotStarted,
            Verdict::Failed { error, elsewhere } => self.ran(Err(error), reused, elsewhere),
            Verdict::Ambiguous(error) => self.ran(Err(error), reused, false),
        };
        self.answer(job, outcome);
    }

    fn ran(&self, result: Result<Delivery, Error>, reused: bool, replaceable: bool) -> Outcome {
        Outcome::Done(Done {
            result,
            conn: self.conn,
            reused,
            replaceable,
        })
    }

    /// One job fewer on this lane; the last one makes it idle, which may be what a send
    /// waiting for a connection needs.
    fn unload(&self) {
        if self.load.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// The next queued job whose caller still waits, if one is queued now.
    pub(super) fn next_wanted(&mut self) -> Option<Job> {
        while let Ok(job) = self.jobs.try_recv() {
            if job.wanted() {
                return Some(job);
            }
            self.unload();
        }
        None
    }

    /// Waits for the next job whose caller still waits, at most `idle_timeout`; a connection
    /// with a shared `lease` checks it after each message and at least every
    /// [`LEASE_RECHECK`] while idle. Once the queue is closed, it only drains what is left.
    pub(super) async fn wait(
        &mut self,
        lease: Option<&ConnectionLease>,
        idle_timeout: Duration,
    ) -> Waited {
        loop {
            let waited = if self.closed {
                self.jobs.recv().await.map_or(Waited::Closed, Waited::Job)
            } else {
                match lease.filter(|l| l.is_shared()) {
                    None => self.wait_open(idle_timeout).await,
                    Some(lease) => self.wait_shared(lease, idle_timeout).await,
                }
            };
            match waited {
                Waited::Job(job) if !job.wanted() => self.unload(),
                other => return other,
            }
        }
    }

    async fn wait_open(&mut self, idle_timeout: Duration) -> Waited {
        match tokio::time::timeout(idle_timeout, self.jobs.recv()).await {
            Ok(job) => job.map_or(Waited::Closed, Waited::Job),
            Err(_) => Waited::Idle,
        }
    }

    async fn wait_shared(&mut self, lease: &ConnectionLease, idle_timeout: Duration) -> Waited {
        let idle_since = tokio::time::Instant::now();
        loop {
            // A job already queued goes first; an idle connection gives the slot up.
            match self.jobs.try_recv() {
                Ok(job) => return Waited::Job(job),
                Err(mpsc::error::TryRecvError::Disconnected) => return Waited::Closed,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if lease.should_close() {
                return Waited::SlotWanted;
            }
            let left = idle_timeout.saturating_sub(idle_since.elapsed());
            if left.is_zero() {
                return Waited::Idle;
            }
            if let Ok(job) = tokio::time::timeout(left.min(LEASE_RECHECK), self.jobs.recv()).await {
                return job.map_or(Waited::Closed, Waited::Job);
            }
        }
    }

    /// Takes no more jobs: the pool finds the queue closed and gives its jobs to other lanes.
    /// What was queued before is still taken.
    pub(super) fn close(&mut self) {
        self.jobs.close();
        self.closed = true;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the queue and hands back every job left in it, not started.
    pub(super) fn hand_back_rest(&mut self) {
        self.close();
        while let Ok(job) = self.jobs.try_recv() {
            self.answer(job, Outcome::NotStarted);
        }
    }
}
