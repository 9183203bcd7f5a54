//! The journal's writer: a [`CommitQueue`] whose records are the journal's writes
//! ([`Write`]), each group committed as one row of the log (see `log.rs`).
//!
//! In-flight marks are submitted: the sending task waits for the commit before it sends,
//! and a mark waits a moment ([`GATHER`]) for other tasks' marks to share its commit and its
//! `fsync`; the task waiting meanwhile is still sending its previous batch, so the wait costs
//! it nothing. Outcomes and the line count are deferred: they ride in the next mark's commit,
//! which is done before that task sends anything else, or go on their own after
//! [`OUTCOME_DELAY`] (or once [`MAX_GROUP`] wait). Committing each trickle of outcomes on
//! its own cost a commit and an `fsync` per few lines, and made the journal half of a fast
//! run's time. These numbers were tuned against `benches/bulk.sh` (BENCHMARKS.md, issue 11,
//! session 6); change them only with a run of it.

use std::path::PathBuf;
use std::time::Duration;

use super::error::JournalError;
use super::group_commit::{CommitError, CommitQueue, PendingCommit, Tuning};
use super::line::{Mark, Outcome};
use super::log::{self, Write};
use super::store::{unix_now, DurableStore};
use crate::bulk::input::LineHash;

/// Requests committed in one transaction at most (bounds a transaction's duration).
const MAX_GROUP: usize = 4096;

/// How long a mark waits, at most, for others to share its commit. Each commit costs an
/// `fsync` (on a virtual machine, a VM exit and the host's I/O thread); a writer told how many
/// tasks mark (`Journal::into_writer_for`) commits as soon as it holds a mark from each, so
/// the wait is about one task's turn, and 10 ms only bounds it. That stays shorter than a
/// fast task's batch takes to send (so a task waits for nothing) and than one message to a
/// server across a network.
const GATHER: Duration = Duration::from_millis(10);

/// How long recorded outcomes wait for a mark to ride with before they are committed on
/// their own (so `--status` sees progress even while no mark comes, e.g. under a slow rate).
pub(super) const OUTCOME_DELAY: Duration = Duration::from_millis(500);

/// The journal's writer: a thread that owns the connection and commits what is queued in one
/// transaction at a time.
pub struct JournalWriter {
    queue: CommitQueue<Write>,
    path: PathBuf,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Hands `store` to a writer thread. With `tasks`, a commit goes as soon as it holds
    /// that many marks; without, a mark waits the whole gathering time.
    pub(super) fn start(
        store: DurableStore,
        tasks: Option<usize>,
    ) -> Result<JournalWriter, JournalError> {
        let path = store.path().to_path_buf();
        let tuning = Tuning {
            gather: GATHER,
            submitters: tasks,
            deferred_wait: OUTCOME_DELAY,
            max_deferred: MAX_GROUP,
            thread: "outbound-journal",
            what: "the bulk journal",
        };
        let mut buf = Vec::new();
        let queue = CommitQueue::start(store, tuning, move |tx, group| commit(tx, group, &mut buf))
            .map_err(|e| JournalError::WriterStopped(format!("cannot start its thread: {e}")))?;
        Ok(JournalWriter { queue, path })
    }

    /// Marks `line` (whose text hashes to `hash`) in flight with `message_id`, and returns
    /// once that is committed (with every outcome recorded before it).
    pub async fn in_flight(
        &self,
        line: u64,
        hash: LineHash,
        message_id: &str,
    ) -> Result<(), JournalError> {
        self.in_flight_all(vec![Mark {
            line,
            hash,
            message_id: message_id.to_string(),
        }])
        .await
    }

    /// Marks several lines in flight in one commit, and returns once that is committed.
    pub async fn in_flight_all(&self, lines: Vec<Mark>) -> Result<(), JournalError> {
        self.begin_in_flight(lines)?.committed().await
    }

    /// Queues an in-flight mark for several lines without waiting; the lines may be sent once
    /// [`PendingMark::committed`] returns.
    pub fn begin_in_flight(&self, lines: Vec<Mark>) -> Result<PendingMark, JournalError> {
        let pending = self
            .queue
            .submit(Write::InFlight { lines })
            .map_err(|e| writer_error(&self.path, e))?;
        Ok(PendingMark {
            pending,
            path: self.path.clone(),
        })
    }

    /// Records the outcome of a line marked in flight before; committed with the next group
    /// (not waited for).
    pub fn record(&self, line: u64, outcome: Outcome) -> Result<(), JournalError> {
        self.defer(Write::Outcome {
            line,
            hash: None,
            outcome,
        })
    }

    /// Records the outcome of a line that may have no row yet (malformed, blank, or failed
    /// before it was marked), with the hash of its text for the row.
    pub fn record_line(
        &self,
        line: u64,
        hash: LineHash,
        outcome: Outcome,
    ) -> Result<(), JournalError> {
        self.defer(Write::Outcome {
            line,
            hash: Some(hash),
            outcome,
        })
    }

    /// Records that the run read the whole input, of `lines` lines (a re-run then checks
    /// the count, and `--status` counts the lines not reached as pending).
    pub fn input_read(&self, lines: u64) -> Result<(), JournalError> {
        self.defer(Write::Lines(lines))
    }

    fn defer(&self, write: Write) -> Result<(), JournalError> {
        self.queue
            .defer(write)
            .map_err(|e| writer_error(&self.path, e))
    }

    /// Commits everything queued and stops the writer.
    pub async fn finish(self) -> Result<(), JournalError> {
        let path = self.path;
        self.queue
            .finish()
            .await
            .map_err(|e| writer_error(&path, e))
    }
}

/// An in-flight mark queued by [`JournalWriter::begin_in_flight`].
#[derive(Debug)]
pub struct PendingMark {
    pending: PendingCommit,
    path: PathBuf,
}

impl PendingMark {
    /// Whether the commit is done (or failed) already, without waiting.
    pub fn is_committed(&mut self) -> bool {
        self.pending.is_committed()
    }

    /// Returns once the mark is committed (or the commit failed).
    pub async fn committed(self) -> Result<(), JournalError> {
        let path = self.path;
        self.pending
            .committed()
            .await
            .map_err(|e| writer_error(&path, e))
    }
}

/// The queue's error, as the journal says it.
fn writer_error(path: &std::path::Path, e: CommitError) -> JournalError {
    JournalError::WriterStopped(match e {
        CommitError::Failed(sqlite) => sqlite,
        CommitError::EarlierFailed => "an earlier journal write failed".into(),
        CommitError::Stopped => format!("{} is no longer written", path.display()),
    })
}

/// Commits a group: one log row holding all of it (see `log.rs`).
fn commit(
    tx: &rusqlite::Transaction<'_>,
    group: &[Write],
    buf: &mut Vec<u8>,
) -> rusqlite::Result<()> {
    buf.clear();
    log::encode(group, buf);
    if buf.is_empty() {
        return Ok(());
    }
    tx.prepare_cached("INSERT INTO log (at, body) VALUES (?1, ?2)")?
        .execute(rusqlite::params![unix_now(), &buf[..]])?;
    Ok(())
}
