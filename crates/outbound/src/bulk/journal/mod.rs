//! The journal of a bulk run: one SQLite file (WAL) with a row per input line and its state.
//!
//! While a run sends, each commit appends one row to a `log` table: every in-flight mark and
//! outcome of its group, encoded together (see `log.rs` for the format and why). The `lines`
//! table (one row per line reached, with the hash of its text; a line with no row is
//! pending) is brought up to date from the log when the journal is reopened, and `--status`
//! reads it through the log without writing. The line count is recorded once a run has read
//! the whole input.
//!
//! Durability is what makes a re-run exact. A line is committed as `in_flight` before its
//! content is sent, so a crash can leave a line in doubt but never lose track of one that
//! went out. Commits are grouped: one writer thread owns the connection and commits every
//! request queued at that moment in one transaction (group commit), so a run of N concurrent
//! sends pays about one `fsync` per round of N marks rather than one per line. Outcomes are
//! not waited for: they ride in the transaction of the next mark, which is committed before
//! that worker sends anything else. Hence a crash leaves at most two batches of lines in
//! doubt per sending task (see the module documentation of [`crate::bulk`]).
//!
//! # Its parts
//!
//! One file per concern; each uses only files listed before it:
//!
//! - `store.rs`: the durable SQLite file: WAL, an `fsync` per commit, a checkpoint every 256
//!   pages, one process at a time (a lock beside it), the format check. It names nothing of
//!   bulk.
//! - `group_commit.rs`: a writer thread that commits submitted records in groups, one
//!   transaction each, and tells each submitter when its record is durable. It names nothing
//!   of bulk either: the relay's spool is meant to use both.
//! - `line.rs`: a line's state, its record, an in-flight mark, an outcome.
//! - `log.rs`: the journal's tables and format versions, and the encoding of its log.
//! - `error.rs`: [`JournalError`].
//! - `fold.rs`: the log applied to the line rows (for good on reopening, or read through).
//! - `input_check.rs`: a re-run's input against the journal's hashes and line count.
//! - `status.rs`: the `--status` summary, every record, and [`StateReader`].
//! - `writer.rs`: [`JournalWriter`], the group commit with the journal's records and numbers.
//!
//! This file is the face: [`Journal`] opens a journal through them and hands it on.

mod error;
mod fold;
pub(crate) mod group_commit;
mod input_check;
mod line;
mod log;
mod status;
pub(crate) mod store;
mod writer;

#[cfg(test)]
mod tests;

pub use error::JournalError;
#[cfg(test)]
pub(crate) use fold::lines_in_flight;
pub use line::{LineRecord, LineState, Mark, Outcome};
pub use status::{JournalStatus, StateReader};
pub use writer::{JournalWriter, PendingMark};

use std::path::Path;

use rusqlite::{params, Connection};

use log::{SCHEMA_VERSION, SCHEMA_WITHOUT_LOG};
use store::{unix_now, Durability, DurableStore, Schema, SCHEMA_KEY};

/// How hard each commit is pushed to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JournalSync {
    /// `fsync` at every commit (SQLite `synchronous=FULL`): a committed in-flight mark
    /// survives a power cut or an operating-system crash, not only the end of the process.
    #[default]
    Full,
    /// No `fsync` at commits (`synchronous=NORMAL` in WAL mode): a committed mark survives
    /// the process crashing or being killed (`kill -9`), since it is in the operating
    /// system's hands, but a power cut may lose the last commits (and so resend lines).
    Normal,
}

/// An open journal, before the run starts writing to it.
#[derive(Debug)]
pub struct Journal {
    store: DurableStore,
    run_id: String,
    lines: Option<u64>,
    created: bool,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for `input`. A new journal has no line rows
    /// yet (every line is pending); an existing one is checked against the input: every line
    /// it has a row for must hash the same, and the line count must match once a run has
    /// read the whole input. A difference is refused with [`JournalError::InputChanged`].
    ///
    /// ```
    /// use outbound::bulk::{Journal, LineState};
    /// let dir = tempfile::tempdir().unwrap();
    /// let input = dir.path().join("in.jsonl");
    /// std::fs::write(&input, "{\"to\":\"a@example.com\",\"text\":\"hi\"}\n").unwrap();
    /// let journal = Journal::open(&dir.path().join("run.journal"), &input)?;
    /// assert!(journal.is_new());
    /// assert_eq!(journal.lines(), None, "not read to the end yet");
    /// drop(journal);
    /// let status = Journal::status(&dir.path().join("run.journal"))?;
    /// assert_eq!(status.states.get(LineState::Delivered.as_str()), None);
    /// # Ok::<(), outbound::bulk::JournalError>(())
    /// ```
    pub fn open(path: &Path, input: &Path) -> Result<Journal, JournalError> {
        let sql = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let tables = format!("{}\n{}", log::lines_ddl(""), log::LOG_DDL);
        let mut store = DurableStore::open(
            path,
            &Schema {
                tables: &tables,
                versions: &[SCHEMA_VERSION, SCHEMA_WITHOUT_LOG],
            },
        )?;
        let (run_id, lines, created) = match store.meta("run_id").map_err(sql)? {
            Some(run_id) => {
                // What the last run logged becomes rows now, before the input is checked
                // against them (and a format 1 journal, which now has a log, says so).
                fold::fold(store.conn_mut(), path)?;
                if store.version() == Some(SCHEMA_WITHOUT_LOG) {
                    store
                        .conn()
                        .execute(
                            "UPDATE meta SET value = ?1 WHERE key = 'schema'",
                            [SCHEMA_VERSION],
                        )
                        .map_err(sql)?;
                }
                let recorded = store.meta("input").map_err(sql)?.unwrap_or_default();
                let lines = match store.meta("lines").map_err(sql)? {
                    Some(lines) => Some(lines.parse().map_err(|_| JournalError::NotAJournal {
                        path: path.to_path_buf(),
                        why: format!("its line count is `{lines}`"),
                    })?),
                    None => None,
                };
                input_check::compare(store.conn(), path, input, &recorded, lines)?;
                (run_id, lines, false)
            }
            None => {
                // New (or its first commit never happened): start clean.
                let run_id = new_run_id();
                begin(store.conn_mut(), path, input, &run_id)?;
                (run_id, None, true)
            }
        };
        Ok(Journal {
            store,
            run_id,
            lines,
            created,
        })
    }

    /// The run's id: part of every derived Message-ID, the same in every re-run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Lines in the input, once a run has read it to the end (`None` before).
    pub fn lines(&self) -> Option<u64> {
        self.lines
    }

    /// Whether this call created the journal.
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// A second connection that reads states in line order while the writer writes.
    pub fn reader(&self) -> Result<StateReader, JournalError> {
        StateReader::open(self.store.path())
    }

    /// Sets how hard commits are pushed to the disk (default [`JournalSync::Full`]).
    pub fn set_sync(&self, sync: JournalSync) -> Result<(), JournalError> {
        let durability = match sync {
            JournalSync::Full => Durability::Full,
            JournalSync::Normal => Durability::Normal,
        };
        Ok(self.store.set_durability(durability)?)
    }

    /// Hands the connection to a writer thread that commits in groups: a mark waits the whole
    /// gathering time (10 ms) for others to share its commit.
    pub fn into_writer(self) -> Result<JournalWriter, JournalError> {
        JournalWriter::start(self.store, None)
    }

    /// Like [`into_writer`](Self::into_writer), for `tasks` tasks that each have at most one
    /// mark waiting: a commit goes as soon as it holds `tasks` marks (one from each), and
    /// waits the whole gathering time only when some task is not marking.
    ///
    /// ```
    /// use outbound::bulk::{line_hash, Journal, RawLine};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let input = dir.path().join("in.jsonl");
    /// std::fs::write(&input, "{\"to\":\"a@example.com\",\"text\":\"hi\"}\n")?;
    /// let writer = Journal::open(&dir.path().join("run.journal"), &input)?.into_writer_for(1)?;
    /// let hash = line_hash(&RawLine::Text(std::fs::read(&input)?.trim_ascii_end().to_vec()));
    /// writer.in_flight(1, hash, "<bulk.1@example.com>").await?; // committed at once
    /// writer.finish().await?;
    /// # Ok(()) }
    /// ```
    pub fn into_writer_for(self, tasks: usize) -> Result<JournalWriter, JournalError> {
        JournalWriter::start(self.store, Some(tasks.max(1)))
    }

    /// Reads a summary of the journal at `path` without changing it.
    pub fn status(path: &Path) -> Result<JournalStatus, JournalError> {
        status::read(path)
    }

    /// Every line's record, in line order (for tests and tools; reads the whole table).
    pub fn all_records(path: &Path) -> Result<Vec<LineRecord>, JournalError> {
        status::all_records(path)
    }
}

fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = unix_now().to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a new journal: its meta rows (format, run id, input, creation time) in one commit.
/// Line rows come as the run reaches the lines.
fn begin(
    conn: &mut Connection,
    path: &Path,
    input: &Path,
    run_id: &str,
) -> Result<(), JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn.transaction().map_err(sql)?;
    tx.execute("DELETE FROM lines", []).map_err(sql)?;
    tx.execute("DELETE FROM log", []).map_err(sql)?;
    tx.execute("DELETE FROM meta", []).map_err(sql)?;
    let shown = std::fs::canonicalize(input)
        .unwrap_or_else(|_| input.to_path_buf())
        .display()
        .to_string();
    for (k, v) in [
        (SCHEMA_KEY, SCHEMA_VERSION.to_string()),
        ("run_id", run_id.to_string()),
        ("input", shown),
        ("created", unix_now().to_string()),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![k, v],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}
