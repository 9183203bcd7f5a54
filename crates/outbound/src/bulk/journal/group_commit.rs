//! Group commit: one thread owns a [`DurableStore`] and commits what callers hand it, many
//! records per transaction, so many callers share one `fsync`.
//!
//! A record is either **submitted** ([`CommitQueue::submit`]): its caller waits until the
//! transaction holding it is committed ([`PendingCommit::committed`]), i.e. durable; or
//! **deferred** ([`CommitQueue::defer`]): nobody waits, and it rides in the next commit.
//!
//! The writer thread, per group:
//! 1. waits for a request; after the first submitted one it gathers: it waits until it holds
//!    one submitted record per submitter ([`Tuning::submitters`]), at most
//!    [`Tuning::gather`] (or, told no count, sleeps the whole of it), so concurrent callers
//!    share the commit. A flush (from [`CommitQueue::finish`]) goes at once.
//! 2. takes every deferred record waiting (they wait in a shared buffer, not the channel: a
//!    message per record woke the thread once per record, which cost more than the commits)
//!    and everything else queued, deferred records first;
//! 3. hands them, in that order, to the user's commit function inside one transaction, and
//!    answers every submitter with the result.
//!
//! Deferred records with no submitted one to ride with are committed on their own after
//! [`Tuning::deferred_wait`], or at once when [`Tuning::max_deferred`] are waiting.
//!
//! A failed commit stops the queue: its submitters and everyone queued behind them get the
//! error, and every later call is refused, so nothing is acted on unrecorded. (A user that
//! wants to carry on after, say, a full disk, opens the store again.)
//!
//! Users: the bulk journal (a submitted record is a batch of in-flight marks; deferred ones
//! are outcomes and the line count). The relay's spool is meant to be the second: a
//! submitted record per accepted message, answered `250` once its commit is durable, and
//! deferred records for delivery outcomes (see ARCHITECTURE.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::store::DurableStore;

/// How a queue groups its commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// After a group's first submitted record, how long the writer waits, at most, for
    /// others to share its commit.
    pub(crate) gather: Duration,
    /// How many callers submit, each with at most one record waiting: the writer commits as
    /// soon as it holds one from each. `None`: it always waits the whole `gather`, asleep.
    pub(crate) submitters: Option<usize>,
    /// How long deferred records wait, at most, for a submitted one to ride with.
    pub(crate) deferred_wait: Duration,
    /// Deferred records waiting that make the writer commit at once (bounds a transaction).
    pub(crate) max_deferred: usize,
    /// The writer thread's name.
    pub(crate) thread: &'static str,
    /// The store, as logs name it ("the bulk journal").
    pub(crate) what: &'static str,
}

/// Why a record is not (known to be) durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitError {
    /// The commit holding it failed: what SQLite said.
    Failed(String),
    /// An earlier commit failed, so the queue stopped before this one.
    EarlierFailed,
    /// The queue is no longer written (it stopped, or was finished).
    Stopped,
}

type Ack = oneshot::Sender<Result<(), CommitError>>;

enum Request<R> {
    /// A record whose caller waits for its commit.
    Submit { record: R, ack: Ack },
    /// Commit everything queued now, and say when it is done.
    Flush { ack: Ack },
    /// Many deferred records are waiting in the shared buffer: commit them.
    Wake,
}

/// Deferred records not yet committed, taken by the writer at its next commit.
struct Deferred<R> {
    records: Mutex<Vec<R>>,
    /// The writer stopped (a commit failed, or it finished): nothing more is taken.
    stopped: AtomicBool,
}

impl<R> Deferred<R> {
    /// The buffer (a panic while it was held cannot leave it half-written: pushes are whole).
    fn records(&self) -> MutexGuard<'_, Vec<R>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<R> {
        std::mem::take(&mut *self.records())
    }
}

/// A writer thread owning a store, committing records in groups (see the module docs).
pub(crate) struct CommitQueue<R> {
    tx: mpsc::Sender<Request<R>>,
    deferred: Arc<Deferred<R>>,
    thread: Option<JoinHandle<()>>,
    max_deferred: usize,
}

impl<R> std::fmt::Debug for CommitQueue<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitQueue").finish_non_exhaustive()
    }
}

impl<R: Send + 'static> CommitQueue<R> {
    /// Starts the writer thread, which owns `store` (and so its lock) until it ends: when
    /// [`finish`](Self::finish) is called, the queue is dropped, or a commit fails.
    /// `commit` writes a group of records into the transaction it is given (nothing else
    /// commits, so each group is atomic); it is not called for a flush with nothing queued.
    pub(crate) fn start<C>(
        store: DurableStore,
        tuning: Tuning,
        commit: C,
    ) -> std::io::Result<CommitQueue<R>>
    where
        C: FnMut(&rusqlite::Transaction<'_>, &[R]) -> rusqlite::Result<()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let deferred = Arc::new(Deferred {
            records: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let shared = deferred.clone();
        let thread = std::thread::Builder::new()
            .name(tuning.thread.into())
            .spawn(move || {
                let mut store = store;
                write_loop(store.conn_mut(), &rx, &shared, &tuning, commit);
                shared.stopped.store(true, Ordering::Release);
                // The lock is released when the writer is done, not before.
                drop(store);
            })?;
        Ok(CommitQueue {
            tx,
            deferred,
            thread: Some(thread),
            max_deferred: tuning.max_deferred,
        })
    }

    /// Queues `record` for the next commit; [`PendingCommit::committed`] returns once that
    /// commit is durable.
    pub(crate) fn submit(&self, record: R) -> Result<PendingCommit, CommitError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Request::Submit { record, ack })
            .map_err(|_| CommitError::Stopped)?;
        Ok(PendingCommit { done, seen: None })
    }

    /// Queues `record` to ride with the next commit, without waiting for it.
    pub(crate) fn defer(&self, record: R) -> Result<(), CommitError> {
        if self.deferred.stopped.load(Ordering::Acquire) {
            return Err(CommitError::Stopped);
        }
        let queued = {
            let mut records = self.deferred.records();
            records.push(record);
            records.len()
        };
        if queued == self.max_deferred {
            self.tx
                .send(Request::Wake)
                .map_err(|_| CommitError::Stopped)?;
        }
        Ok(())
    }

    /// Commits everything queued, stops the writer and waits for its thread.
    pub(crate) async fn finish(mut self) -> Result<(), CommitError> {
        let (ack, done) = oneshot::channel();
        let sent = self.tx.send(Request::Flush { ack }).is_ok();
        let result = match (sent, done.await) {
            (true, Ok(result)) => result,
            _ => Err(CommitError::Stopped),
        };
        // Closing the channel ends the thread's loop.
        let (closed, _) = mpsc::channel();
        self.tx = closed;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

/// A submitted record, until its commit is done.
#[derive(Debug)]
pub(crate) struct PendingCommit {
    done: oneshot::Receiver<Result<(), CommitError>>,
    /// The commit's result, once seen by [`is_committed`](Self::is_committed).
    seen: Option<Result<(), CommitError>>,
}

impl PendingCommit {
    /// Whether the commit is done (or failed) already, without waiting.
    pub(crate) fn is_committed(&mut self) -> bool {
        if self.seen.is_none() {
            match self.done.try_recv() {
                Ok(result) => self.seen = Some(result),
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.seen = Some(Err(CommitError::Stopped));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        self.seen.is_some()
    }

    /// Returns once the record is committed (or the commit failed).
    pub(crate) async fn committed(self) -> Result<(), CommitError> {
        match self.seen {
            Some(result) => result,
            None => self.done.await.unwrap_or(Err(CommitError::Stopped)),
        }
    }
}

/// Waits (at most `within`) until `group` holds `submitters` submitted records. Returns
/// whether the channel closed meanwhile.
fn gather<R>(
    rx: &mpsc::Receiver<Request<R>>,
    group: &mut Vec<Request<R>>,
    submitters: usize,
    within: Duration,
) -> bool {
    let is_submit = |r: &Request<R>| matches!(r, Request::Submit { .. });
    let deadline = Instant::now() + within;
    let mut submitted = group.iter().filter(|r| is_submit(r)).count();
    while submitted < submitters {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => {
                submitted += usize::from(is_submit(&r));
                group.push(r);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return false,
            Err(mpsc::RecvTimeoutError::Disconnected) => return true,
        }
    }
    false
}

/// Commits what is queued, a group at a time (see the module docs), until the channel
/// closes or a commit fails.
fn write_loop<R, C>(
    conn: &mut rusqlite::Connection,
    rx: &mpsc::Receiver<Request<R>>,
    deferred: &Deferred<R>,
    tuning: &Tuning,
    mut commit: C,
) where
    C: FnMut(&rusqlite::Transaction<'_>, &[R]) -> rusqlite::Result<()>,
{
    let mut group: Vec<Request<R>> = Vec::new();
    let mut acks: Vec<Ack> = Vec::new();
    loop {
        let mut disconnected = match rx.recv_timeout(tuning.deferred_wait) {
            Ok(r) => {
                group.push(r);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let awaited = group.iter().any(|r| !matches!(r, Request::Wake));
        let flush = group.iter().any(|r| matches!(r, Request::Flush { .. }));
        if awaited && !flush && !disconnected {
            // Other callers' records usually follow within a moment: gathered, they share
            // the commit (and its fsync).
            match tuning.submitters {
                Some(n) => disconnected = gather(rx, &mut group, n, tuning.gather),
                // Not told how many submit: the whole time, asleep (no wake-up per request).
                None => std::thread::sleep(tuning.gather),
            }
        }
        while let Ok(r) = rx.try_recv() {
            group.push(r);
        }
        // Every deferred record queued before these requests were sent is in the buffer now.
        let mut records = deferred.take();
        if records.is_empty() && group.is_empty() {
            if disconnected {
                return;
            }
            continue;
        }
        for request in group.drain(..) {
            match request {
                Request::Submit { record, ack } => {
                    records.push(record);
                    acks.push(ack);
                }
                Request::Flush { ack } => acks.push(ack),
                Request::Wake => {}
            }
        }
        let result = if records.is_empty() {
            Ok(())
        } else {
            write(conn, &records, &mut commit).map_err(|e| CommitError::Failed(e.to_string()))
        };
        if let Err(CommitError::Failed(e)) = &result {
            tracing::error!(error = %e, "{} could not be written", tuning.what);
        }
        tracing::trace!(records = records.len(), "{} group committed", tuning.what);
        if result.is_err() {
            // Refuse everything after a failed commit: nothing may be acted on unrecorded.
            // Stopped before the submitters hear of it, so none of them can still defer.
            deferred.stopped.store(true, Ordering::Release);
        }
        // The submitters first: the records are freed after.
        for ack in acks.drain(..) {
            let _ = ack.send(result.clone());
        }
        drop(records);
        if result.is_err() {
            // What is queued is answered; returning drops the receiver, so later requests
            // fail.
            while let Ok(r) = rx.try_recv() {
                if let Request::Submit { ack, .. } | Request::Flush { ack } = r {
                    let _ = ack.send(Err(CommitError::EarlierFailed));
                }
            }
            return;
        }
        if disconnected {
            return;
        }
    }
}

/// One group in one transaction.
fn write<R, C>(
    conn: &mut rusqlite::Connection,
    records: &[R],
    commit: &mut C,
) -> rusqlite::Result<()>
where
    C: FnMut(&rusqlite::Transaction<'_>, &[R]) -> rusqlite::Result<()>,
{
    let tx = conn.transaction()?;
    commit(&tx, records)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::bulk::journal::store::{Schema, StoreError};

    /// A store of numbers below 100 (a commit holding 100 or more fails).
    fn open(path: &Path) -> Result<DurableStore, StoreError> {
        DurableStore::open(
            path,
            &Schema {
                tables: "CREATE TABLE IF NOT EXISTS item (n INTEGER PRIMARY KEY CHECK (n < 100));",
                versions: &["1"],
            },
        )
    }

    fn tuning(submitters: Option<usize>, gather: Duration, deferred_wait: Duration) -> Tuning {
        Tuning {
            gather,
            submitters,
            deferred_wait,
            max_deferred: 3,
            thread: "test-commits",
            what: "the test store",
        }
    }

    /// The groups a test queue committed, in order.
    type Groups = Arc<Mutex<Vec<Vec<u64>>>>;

    /// Starts a queue that inserts its records and keeps each group it committed.
    fn start(path: &Path, tuning: Tuning) -> (CommitQueue<u64>, Groups) {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = groups.clone();
        let queue = CommitQueue::start(open(path).unwrap(), tuning, move |tx, group: &[u64]| {
            for n in group {
                tx.execute("INSERT INTO item (n) VALUES (?1)", [n])?;
            }
            seen.lock().unwrap().push(group.to_vec());
            Ok(())
        })
        .unwrap();
        (queue, groups)
    }

    fn stored(path: &Path) -> Vec<u64> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT n FROM item ORDER BY n").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// A submitter hears of its commit once the record is in the file; told how many submit,
    /// the writer commits as soon as it holds one record from each, not after `gather`.
    #[tokio::test]
    async fn submitters_share_a_commit_and_hear_when_it_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let gather = Duration::from_secs(30);
        let (queue, groups) = start(&path, tuning(Some(3), gather, gather));
        let started = Instant::now();
        let pending: Vec<_> = (1..=3).map(|n| queue.submit(n).unwrap()).collect();
        for p in pending {
            p.committed().await.unwrap();
        }
        assert!(
            started.elapsed() < gather,
            "waited the whole gathering time"
        );
        assert_eq!(stored(&path), [1, 2, 3], "durable when told");
        assert_eq!(*groups.lock().unwrap(), [vec![1, 2, 3]], "one commit");
        queue.finish().await.unwrap();
    }

    /// Deferred records ride, first, with the next submitted one; with none, they are
    /// committed when `max_deferred` wait, or after `deferred_wait`.
    #[tokio::test]
    async fn deferred_records_ride_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let long = Duration::from_secs(30);
        let (queue, groups) = start(&path, tuning(Some(1), long, long));
        queue.defer(1).unwrap();
        queue.defer(2).unwrap();
        let mut pending = queue.submit(3).unwrap();
        let waited = Instant::now();
        while !pending.is_committed() {
            assert!(waited.elapsed() < long / 2, "never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pending.committed().await.unwrap();
        assert_eq!(groups.lock().unwrap().last().unwrap(), &[1, 2, 3]);
        for n in 4..=6 {
            queue.defer(n).unwrap();
        }
        let waited = Instant::now();
        while stored(&path).len() < 6 {
            assert!(
                waited.elapsed() < long / 2,
                "max_deferred did not wake the writer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        queue.finish().await.unwrap();

        let path = dir.path().join("q2.sqlite");
        let (queue, _) = start(&path, tuning(None, long, Duration::from_millis(50)));
        queue.defer(7).unwrap();
        let waited = Instant::now();
        while stored(&path).is_empty() {
            assert!(
                waited.elapsed() < long / 2,
                "a deferred record was never committed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        queue.finish().await.unwrap();
    }

    /// A failed commit is answered to its submitters and stops the queue: nothing later is
    /// taken, and nothing of the failed group is in the file.
    #[tokio::test]
    async fn a_failed_commit_stops_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let long = Duration::from_secs(30);
        let (queue, _) = start(&path, tuning(Some(1), long, long));
        queue.submit(1).unwrap().committed().await.unwrap();
        queue.defer(2).unwrap();
        match queue.submit(100).unwrap().committed().await {
            Err(CommitError::Failed(e)) => assert!(e.contains("CHECK"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(queue.defer(3), Err(CommitError::Stopped));
        let later = match queue.submit(4) {
            Ok(p) => p.committed().await,
            Err(e) => Err(e),
        };
        assert!(
            matches!(
                later,
                Err(CommitError::Stopped | CommitError::EarlierFailed)
            ),
            "{later:?}"
        );
        let finished = queue.finish().await;
        assert!(
            matches!(
                finished,
                Err(CommitError::Stopped | CommitError::EarlierFailed)
            ),
            "{finished:?}"
        );
        assert_eq!(stored(&path), [1], "the failed group is rolled back whole");
    }

    /// The writer holds the store (and its lock) until it is finished.
    #[tokio::test]
    async fn the_store_is_held_until_the_writer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        let queue = CommitQueue::start(
            open(&path).unwrap(),
            tuning(Some(1), Duration::ZERO, Duration::from_secs(30)),
            move |_, _: &[u64]| {
                counted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
        assert!(matches!(open(&path), Err(StoreError::Busy { .. })));
        queue.finish().await.unwrap();
        assert_eq!(
            commits.load(Ordering::Relaxed),
            0,
            "a flush alone commits nothing"
        );
        assert!(open(&path).is_ok(), "released when the writer ended");
    }
}
