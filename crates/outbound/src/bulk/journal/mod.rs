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

pub(crate) mod group_commit;
mod log;
pub(crate) mod store;
mod writer;

pub use writer::{JournalWriter, PendingMark};

#[cfg(test)]
pub(crate) use log::lines_in_flight;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::input::{line_hash, LineHash, LineReader, MAX_LINE_BYTES};
use store::{unix_now as now, Durability, DurableStore, Schema, SCHEMA_KEY};

/// The journal format this code writes. Format 2 added the log; format 1 journals (rows
/// written as the run went, or filled up front) are read as they are and upgraded on open.
const SCHEMA_VERSION: &str = "2";

/// The format before the log, which this code still opens.
const SCHEMA_WITHOUT_LOG: &str = "1";

/// Rows fetched at a time when comparing or reading states in line order.
const CHUNK: u64 = 2048;

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

/// The state of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LineState {
    /// Not sent yet.
    Pending,
    /// Marked durably before its content was sent; no outcome recorded yet. After a crash
    /// these are the lines in doubt.
    InFlight,
    /// Accepted by the server (the receipt's provider id is recorded).
    Delivered,
    /// Refused or failed before anything was delivered (the error kind is recorded); a
    /// re-run sends it again.
    Failed,
    /// It may or may not have been delivered (the connection broke after the content went
    /// out, or the run was interrupted while it was in flight). Not resent unless asked.
    Ambiguous,
    /// The line is not a valid message description (reported with its line number).
    Malformed,
    /// An empty line (skipped).
    Blank,
}

impl LineState {
    /// The name stored in the journal and shown by `--status`.
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Pending => "pending",
            LineState::InFlight => "in_flight",
            LineState::Delivered => "delivered",
            LineState::Failed => "failed",
            LineState::Ambiguous => "ambiguous",
            LineState::Malformed => "malformed",
            LineState::Blank => "blank",
        }
    }

    /// The state named `name` (as stored).
    pub fn parse(name: &str) -> Option<LineState> {
        Some(match name {
            "pending" => LineState::Pending,
            "in_flight" => LineState::InFlight,
            "delivered" => LineState::Delivered,
            "failed" => LineState::Failed,
            "ambiguous" => LineState::Ambiguous,
            "malformed" => LineState::Malformed,
            "blank" => LineState::Blank,
            _ => return None,
        })
    }
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// SQLite failed (the file is unreadable, locked, full or corrupt).
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The input could not be read.
    #[error("cannot read the input {path}: {source}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not the one the journal was made for: mixing two runs could skip or
    /// resend the wrong messages.
    #[error(
        "the journal {journal} was made for another input: line {line} of {input} differs from \
         what the journal recorded for {recorded} ({why}); use a new journal for a new input, or \
         give the original input unchanged"
    )]
    InputChanged {
        /// The journal file.
        journal: PathBuf,
        /// The input given now.
        input: PathBuf,
        /// The input the journal was made for.
        recorded: String,
        /// The first line that differs.
        line: u64,
        /// How it differs.
        why: &'static str,
    },
    /// The file is not a journal this version understands.
    #[error("{path} is not an outbound bulk journal of format {SCHEMA_VERSION} ({why})")]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another run is using this journal now; two runs at once could send a line twice.
    #[error(
        "another `outbound bulk` is using the journal {path} now (its lock {lock} is held); \
         wait for it to finish"
    )]
    Busy {
        /// The journal file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The journal's writer stopped (after an earlier error).
    #[error("the journal writer stopped: {0}")]
    WriterStopped(String),
}

impl From<store::StoreError> for JournalError {
    fn from(e: store::StoreError) -> JournalError {
        match e {
            store::StoreError::Sqlite { path, source } => JournalError::Sqlite { path, source },
            store::StoreError::Busy { path, lock } => JournalError::Busy { path, lock },
            store::StoreError::Version { path, found } => JournalError::NotAJournal {
                path,
                why: format!("its format is {found}"),
            },
        }
    }
}

/// One line's row, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The line number (from 1).
    pub line: u64,
    /// Its state.
    pub state: LineState,
    /// The Message-ID it was (or will be) sent with.
    pub message_id: Option<String>,
    /// For failed lines, the error kind (`transient`, `permanent`, …); for in-doubt lines
    /// `ambiguous` or `interrupted`.
    pub kind: Option<String>,
    /// The server's code, when it gave one.
    pub code: Option<u32>,
    /// The error or the reason, for humans.
    pub detail: Option<String>,
    /// The provider's id from the receipt (the SMTP queue id, Resend's email id).
    pub provider_id: Option<String>,
    /// How many times the line was marked in flight (sent), over all runs.
    pub sends: u32,
}

/// What a summary of a journal shows (`outbound bulk --status`).
#[derive(Debug, Clone, Default)]
pub struct JournalStatus {
    /// The input the journal was made for.
    pub input: String,
    /// When the journal was created (Unix seconds).
    pub created: u64,
    /// Lines in the input, once a run has read it to the end.
    pub lines: Option<u64>,
    /// Lines per state. Lines the runs have not reached yet count as pending when the line
    /// count is known; before that, `pending` counts only lines sent back to pending.
    pub states: BTreeMap<&'static str, u64>,
    /// Failed lines per error kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Lines in doubt (in flight or ambiguous), the first 1000 in line order.
    pub in_doubt: Vec<LineRecord>,
    /// Malformed lines, the first 1000 in line order.
    pub malformed: Vec<LineRecord>,
}

/// The outcome of one line, to record.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted; the provider's id when there is one.
    Delivered {
        /// The receipt's provider id.
        provider_id: Option<String>,
    },
    /// Failed before anything was delivered.
    Failed {
        /// The error kind (`ErrorKind::as_str`).
        kind: &'static str,
        /// The server's code.
        code: Option<u32>,
        /// The error, for humans.
        detail: String,
    },
    /// May have been delivered.
    Ambiguous {
        /// `ambiguous` (the transport said so) or `interrupted` (found in flight by a re-run).
        kind: &'static str,
        /// Why.
        detail: String,
    },
    /// Not a valid line.
    Malformed {
        /// Why.
        detail: String,
    },
    /// An empty line (nothing to send).
    Blank,
    /// Marked in flight but not sent after all (the run stopped first): pending again.
    Unsent,
}

/// An open journal, before the run starts writing to it.
#[derive(Debug)]
pub struct Journal {
    store: DurableStore,
    run_id: String,
    lines: Option<u64>,
    created: bool,
}

/// A line to mark in flight: its number, the hash of its text ([`line_hash`]) and the
/// Message-ID it is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The line number (from 1).
    pub line: u64,
    /// The hash of the line's text, recorded with its row to notice a changed input.
    pub hash: LineHash,
    /// The Message-ID the line is sent with.
    pub message_id: String,
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
                log::fold(store.conn_mut()).map_err(|e| fold_error(path, e))?;
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
                compare(store.conn(), path, input, &recorded, lines)?;
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
        let conn = Connection::open_with_flags(
            self.store.path(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| JournalError::Sqlite {
            path: self.store.path().to_path_buf(),
            source,
        })?;
        Ok(StateReader {
            conn,
            path: self.store.path().to_path_buf(),
            buffered: std::collections::VecDeque::new(),
            next: 1,
        })
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
        let sql = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if !path.is_file() {
            return Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
                why: "there is no such file".into(),
            });
        }
        let conn = read_through_log(path)?;
        let meta = |key: &str| -> Result<Option<String>, JournalError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|source| JournalError::NotAJournal {
                    path: path.to_path_buf(),
                    why: source.to_string(),
                })
        };
        let mut status = JournalStatus {
            input: meta("input")?.unwrap_or_default(),
            created: meta("created")?.and_then(|c| c.parse().ok()).unwrap_or(0),
            lines: meta("lines")?.and_then(|c| c.parse().ok()),
            ..JournalStatus::default()
        };
        let mut stmt = conn
            .prepare("SELECT state, count(*) FROM lines GROUP BY state")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .map_err(sql)?;
        let mut with_rows = 0;
        for row in rows {
            let (state, n) = row.map_err(sql)?;
            with_rows += n;
            if let Some(state) = LineState::parse(&state) {
                status.states.insert(state.as_str(), n);
            }
        }
        // Lines without a row were never reached: pending.
        if let Some(unreached) = status.lines.map(|l| l.saturating_sub(with_rows)) {
            if unreached > 0 {
                *status
                    .states
                    .entry(LineState::Pending.as_str())
                    .or_default() += unreached;
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT coalesce(kind, 'unknown'), count(*) FROM lines WHERE state = 'failed' \
                 GROUP BY kind",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .map_err(sql)?;
        for row in rows {
            let (kind, n) = row.map_err(sql)?;
            status.failed_by_kind.insert(kind, n);
        }
        status.in_doubt = records(
            &conn,
            "state IN ('in_flight', 'ambiguous') ORDER BY line LIMIT 1000",
        )
        .map_err(sql)?;
        status.malformed =
            records(&conn, "state = 'malformed' ORDER BY line LIMIT 1000").map_err(sql)?;
        Ok(status)
    }

    /// Every line's record, in line order (for tests and tools; reads the whole table).
    pub fn all_records(path: &Path) -> Result<Vec<LineRecord>, JournalError> {
        let conn = read_through_log(path)?;
        records(&conn, "1 ORDER BY line").map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A read-only connection to the journal at `path` that sees its log applied (a private
/// copy of the tables; the file is not changed, and a run may be writing it meanwhile).
fn read_through_log(path: &Path) -> Result<Connection, JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    // One read transaction, so the copy and the log are of the same moment.
    conn.execute_batch("BEGIN").map_err(sql)?;
    log::overlay(&conn).map_err(|e| fold_error(path, e))?;
    conn.execute_batch("COMMIT").map_err(sql)?;
    Ok(conn)
}

/// A fold's failure, as the journal's error.
fn fold_error(path: &Path, e: log::FoldError) -> JournalError {
    match e {
        log::FoldError::Sqlite(source) => JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
        log::FoldError::Damaged(d) => JournalError::NotAJournal {
            path: path.to_path_buf(),
            why: format!(
                "its log row {} does not decode (the file is damaged)",
                d.seq
            ),
        },
    }
}

fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = now().to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn open_input(input: &Path) -> Result<LineReader<BufReader<std::fs::File>>, JournalError> {
    let file = std::fs::File::open(input).map_err(|source| JournalError::Input {
        path: input.to_path_buf(),
        source,
    })?;
    Ok(LineReader::new(
        BufReader::with_capacity(256 * 1024, file),
        MAX_LINE_BYTES,
    ))
}

fn read_error(input: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Input {
        path: input.to_path_buf(),
        source,
    }
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
        ("created", now().to_string()),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![k, v],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

/// Checks `input` against the rows recorded: each line with a row must hash the same, the
/// input must reach the last line with a row, and when the line count is known (a run read
/// the whole input) it must match. Lines without a row were never acted on.
fn compare(
    conn: &Connection,
    path: &Path,
    input: &Path,
    recorded: &str,
    lines: Option<u64>,
) -> Result<(), JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let changed = |line, why| JournalError::InputChanged {
        journal: path.to_path_buf(),
        input: input.to_path_buf(),
        recorded: recorded.to_string(),
        line,
        why,
    };
    let last_row: u64 = conn
        .query_row("SELECT coalesce(max(line), 0) FROM lines", [], |r| r.get(0))
        .map_err(sql)?;
    let mut reader = open_input(input)?;
    let mut stmt = conn
        .prepare("SELECT line, hash FROM lines WHERE line >= ?1 AND line < ?2 ORDER BY line")
        .map_err(sql)?;
    let mut rows = std::collections::VecDeque::new();
    let mut fetched_to = 1u64;
    let mut count = 0u64;
    while let Some((n, line)) = reader.next_line().map_err(read_error(input))? {
        count = n;
        if n >= fetched_to {
            let found = stmt
                .query_map(params![n, n + CHUNK], |r| {
                    Ok((r.get::<_, u64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql)?;
            rows.extend(found);
            fetched_to = n + CHUNK;
        }
        if rows.front().is_some_and(|(line, _)| *line == n) {
            if let Some((_, hash)) = rows.pop_front() {
                if hash != line_hash(&line) {
                    return Err(changed(n, "its content changed"));
                }
            }
        }
        if lines.is_none() && n >= last_row {
            // Nothing recorded beyond: the rest of the input was never reached.
            return Ok(());
        }
    }
    if count < last_row || lines.is_some_and(|l| count < l) {
        return Err(changed(count + 1, "the input is shorter"));
    }
    match lines {
        Some(l) if count > l => Err(changed(l + 1, "the input is longer")),
        _ => Ok(()),
    }
}

fn records(conn: &Connection, filter: &str) -> rusqlite::Result<Vec<LineRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT line, state, message_id, kind, code, detail, provider_id, sends FROM lines \
         WHERE {filter}"
    ))?;
    let rows = stmt.query_map([], record)?;
    rows.collect()
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<LineRecord> {
    let state: String = r.get(1)?;
    Ok(LineRecord {
        line: r.get(0)?,
        state: LineState::parse(&state).unwrap_or(LineState::Pending),
        message_id: r.get(2)?,
        kind: r.get(3)?,
        code: r.get(4)?,
        detail: r.get(5)?,
        provider_id: r.get(6)?,
        sends: r.get(7)?,
    })
}

/// Reads line states in line order, a chunk at a time (short read transactions, so the WAL
/// can be checkpointed meanwhile).
#[derive(Debug)]
pub struct StateReader {
    conn: Connection,
    path: PathBuf,
    buffered: std::collections::VecDeque<LineRecord>,
    next: u64,
}

impl StateReader {
    /// The record of `line`; lines must be asked for in increasing order.
    pub fn get(&mut self, line: u64) -> Result<Option<LineRecord>, JournalError> {
        loop {
            while let Some(front) = self.buffered.front() {
                if front.line < line {
                    self.buffered.pop_front();
                } else if front.line == line {
                    return Ok(self.buffered.pop_front());
                } else {
                    return Ok(None);
                }
            }
            if self.next > line {
                return Ok(None);
            }
            let start = line.max(self.next);
            let end = start + CHUNK;
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT line, state, message_id, kind, code, detail, provider_id, sends \
                     FROM lines WHERE line >= ?1 AND line < ?2 ORDER BY line",
                )
                .map_err(|source| JournalError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            let rows = stmt
                .query_map(params![start, end], record)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| JournalError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            self.next = end;
            self.buffered.extend(rows);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::writer::OUTCOME_DELAY;
    use super::*;
    use std::time::{Duration, Instant};

    fn input(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("in.jsonl");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn state(path: &Path, line: u64) -> LineRecord {
        find(path, line).unwrap()
    }

    fn find(path: &Path, line: u64) -> Option<LineRecord> {
        Journal::all_records(path)
            .unwrap()
            .into_iter()
            .find(|r| r.line == line)
    }

    fn hash(text: &str) -> LineHash {
        line_hash(&super::super::input::RawLine::Text(
            text.as_bytes().to_vec(),
        ))
    }

    fn mark(line: u64, text: &str) -> Mark {
        Mark {
            line,
            hash: hash(text),
            message_id: format!("<{line}@x>"),
        }
    }

    /// Outcomes ride with the next mark; when none comes they are still committed, within
    /// `OUTCOME_DELAY`, and a mark commits every outcome recorded before it.
    #[tokio::test]
    async fn outcomes_are_committed_with_the_next_mark_or_after_a_delay() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\nb\nc\n");
        let jp = dir.path().join("j.sqlite");
        let w = Journal::open(&jp, &inp).unwrap().into_writer().unwrap();
        w.in_flight_all(vec![mark(1, "a"), mark(2, "b")])
            .await
            .unwrap();
        w.record(1, Outcome::Delivered { provider_id: None })
            .unwrap();
        w.in_flight(3, hash("c"), "<3@x>").await.unwrap();
        assert_eq!(
            state(&jp, 1).state,
            LineState::Delivered,
            "rode with the mark"
        );
        w.record(2, Outcome::Delivered { provider_id: None })
            .unwrap();
        let recorded = Instant::now();
        while state(&jp, 2).state != LineState::Delivered {
            assert!(
                recorded.elapsed() < OUTCOME_DELAY * 6,
                "an outcome with no mark after it was not committed within {:?}",
                OUTCOME_DELAY * 6
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w.record(3, Outcome::Delivered { provider_id: None })
            .unwrap();
        w.finish().await.unwrap();
        assert_eq!(
            state(&jp, 3).state,
            LineState::Delivered,
            "finish commits the rest"
        );
    }

    #[tokio::test]
    async fn states_move_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\nb\n\nc\nd\n");
        let jp = dir.path().join("j.sqlite");
        let journal = Journal::open(&jp, &inp).unwrap();
        assert!(journal.is_new());
        assert_eq!(journal.lines(), None, "not read to the end yet");
        let run_id = journal.run_id().to_string();
        let w = journal.into_writer().unwrap();
        w.in_flight(1, hash("a"), "<1@x>").await.unwrap();
        assert_eq!(
            state(&jp, 1).state,
            LineState::InFlight,
            "durable before sending"
        );
        assert!(find(&jp, 2).is_none(), "a line not reached has no row");
        w.record(
            1,
            Outcome::Delivered {
                provider_id: Some("Q1".into()),
            },
        )
        .unwrap();
        w.in_flight(2, hash("b"), "<2@x>").await.unwrap();
        w.record(
            2,
            Outcome::Failed {
                kind: "transient",
                code: Some(451),
                detail: "451 try later".into(),
            },
        )
        .unwrap();
        w.record_line(3, hash(""), Outcome::Blank).unwrap();
        w.in_flight(4, hash("c"), "<4@x>").await.unwrap();
        w.record_line(
            5,
            hash("d"),
            Outcome::Malformed {
                detail: "not JSON".into(),
            },
        )
        .unwrap();
        w.input_read(5).unwrap();
        w.finish().await.unwrap();

        let r1 = state(&jp, 1);
        assert_eq!(
            (r1.state, r1.provider_id.as_deref(), r1.sends),
            (LineState::Delivered, Some("Q1"), 1)
        );
        let r2 = state(&jp, 2);
        assert_eq!(
            (r2.state, r2.kind.as_deref(), r2.code, r2.sends),
            (LineState::Failed, Some("transient"), Some(451), 1)
        );
        assert_eq!(state(&jp, 3).state, LineState::Blank);
        assert_eq!(
            state(&jp, 4).state,
            LineState::InFlight,
            "no outcome: in doubt"
        );
        assert_eq!(state(&jp, 5).state, LineState::Malformed);

        // Reopening with the same input keeps everything, including the run id.
        let again = Journal::open(&jp, &inp).unwrap();
        assert!(!again.is_new());
        assert_eq!(again.run_id(), run_id);
        assert_eq!(again.lines(), Some(5));
        let mut reader = again.reader().unwrap();
        assert_eq!(reader.get(2).unwrap().unwrap().state, LineState::Failed);
        assert_eq!(reader.get(4).unwrap().unwrap().state, LineState::InFlight);
        assert!(reader.get(9).unwrap().is_none());

        // A resend of the failed line counts a second send on the same row.
        let w = again.into_writer().unwrap();
        w.in_flight(2, hash("b"), "<2@x>").await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(state(&jp, 2).sends, 2);

        let status = Journal::status(&jp).unwrap();
        assert_eq!(status.lines, Some(5));
        assert_eq!(status.states["delivered"], 1);
        assert_eq!(status.states["in_flight"], 2);
        assert_eq!(status.failed_by_kind.get("transient"), None);
        assert_eq!(
            status.in_doubt.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 4]
        );
        assert_eq!(status.malformed[0].line, 5);
    }

    /// Lines not reached count as pending once the line count is known.
    #[tokio::test]
    async fn status_counts_lines_not_reached_as_pending() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\nb\nc\nd\n");
        let jp = dir.path().join("j.sqlite");
        let w = Journal::open(&jp, &inp).unwrap().into_writer().unwrap();
        w.in_flight(1, hash("a"), "<1@x>").await.unwrap();
        w.record(1, Outcome::Delivered { provider_id: None })
            .unwrap();
        w.finish().await.unwrap();
        let status = Journal::status(&jp).unwrap();
        assert_eq!(status.lines, None);
        assert_eq!(status.states.get("pending"), None, "unknown before the end");
        let w = Journal::open(&jp, &inp).unwrap().into_writer().unwrap();
        w.input_read(4).unwrap();
        w.finish().await.unwrap();
        let status = Journal::status(&jp).unwrap();
        assert_eq!(status.lines, Some(4));
        assert_eq!(
            (status.states["delivered"], status.states["pending"]),
            (1, 3)
        );
    }

    /// Writes a journal for "a b c" with every line marked and the count known.
    async fn recorded_abc(dir: &Path) -> (PathBuf, PathBuf) {
        let inp = input(dir, "a\nb\nc\n");
        let jp = dir.join("j.sqlite");
        let w = Journal::open(&jp, &inp).unwrap().into_writer().unwrap();
        w.in_flight_all(vec![mark(1, "a"), mark(2, "b"), mark(3, "c")])
            .await
            .unwrap();
        w.input_read(3).unwrap();
        w.finish().await.unwrap();
        (inp, jp)
    }

    #[tokio::test]
    async fn a_changed_input_is_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let (inp, jp) = recorded_abc(dir.path()).await;
        for (text, line, why) in [
            ("a\nB\nc\n", 2, "its content changed"),
            ("a\nb\n", 3, "the input is shorter"),
            ("a\nb\nc\nd\n", 4, "the input is longer"),
        ] {
            std::fs::write(&inp, text).unwrap();
            match Journal::open(&jp, &inp) {
                Err(JournalError::InputChanged {
                    line: l, why: w, ..
                }) => {
                    assert_eq!((l, w), (line, why), "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        std::fs::write(&inp, "a\nb\nc\n").unwrap();
        assert!(
            Journal::open(&jp, &inp).is_ok(),
            "the original input is accepted again"
        );
    }

    /// A run that stopped before reading the whole input recorded no line count: the lines
    /// it has rows for are still checked, and what lies beyond them was never reached.
    #[tokio::test]
    async fn a_journal_of_an_unfinished_read_checks_the_lines_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\nb\nc\nd\n");
        let jp = dir.path().join("j.sqlite");
        let w = Journal::open(&jp, &inp).unwrap().into_writer().unwrap();
        w.in_flight_all(vec![mark(1, "a"), mark(3, "c")])
            .await
            .unwrap();
        w.finish().await.unwrap();
        for (text, refused) in [
            ("a\nb\nc\nd\n", None),
            ("a\nB\nc\nD\ne\n", None),
            ("a\nb\nC\nd\n", Some((3, "its content changed"))),
            ("a\nb\n", Some((3, "the input is shorter"))),
        ] {
            std::fs::write(&inp, text).unwrap();
            match (Journal::open(&jp, &inp), refused) {
                (Ok(j), None) => assert!(!j.is_new()),
                (Err(JournalError::InputChanged { line, why, .. }), Some(expected)) => {
                    assert_eq!((line, why), expected, "{text:?}")
                }
                (other, _) => panic!("{text:?}: {other:?}"),
            }
        }
    }

    /// A journal of format 1 (rows only, no log) opens as it is, is checked the same, and is
    /// then format 2.
    #[test]
    fn a_format_1_journal_opens_and_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\nb\n");
        let jp = dir.path().join("j.sqlite");
        let conn = Connection::open(&jp).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             {}
             INSERT INTO meta VALUES ('schema', '1'), ('run_id', 'r1'), ('input', 'in'),
                                     ('created', '1'), ('lines', '2');",
            log::lines_ddl("")
        ))
        .unwrap();
        for (line, text, state) in [(1, "a", "delivered"), (2, "b", "in_flight")] {
            conn.execute(
                "INSERT INTO lines (line, hash, state, updated) VALUES (?1, ?2, ?3, 0)",
                params![line, &hash(text)[..], state],
            )
            .unwrap();
        }
        drop(conn);
        let journal = Journal::open(&jp, &inp).unwrap();
        assert_eq!((journal.run_id(), journal.lines()), ("r1", Some(2)));
        let mut reader = journal.reader().unwrap();
        assert_eq!(reader.get(2).unwrap().unwrap().state, LineState::InFlight);
        drop((reader, journal));
        let status = Journal::status(&jp).unwrap();
        assert_eq!(
            (status.states["delivered"], status.states["in_flight"]),
            (1, 1)
        );
        let conn = Connection::open(&jp).unwrap();
        let schema: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(schema, SCHEMA_VERSION);
        drop(conn);
        std::fs::write(&inp, "a\nB\n").unwrap();
        assert!(matches!(
            Journal::open(&jp, &inp),
            Err(JournalError::InputChanged { line: 2, .. })
        ));
    }

    /// What a run logged becomes rows when the journal is reopened (the log is then empty),
    /// and `--status` reads the log without writing the file.
    #[tokio::test]
    async fn the_log_is_folded_into_rows_on_reopening_only() {
        let dir = tempfile::tempdir().unwrap();
        let (inp, jp) = recorded_abc(dir.path()).await;
        let count = |table: &str| -> u64 {
            let conn = Connection::open_with_flags(&jp, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (count("lines"), count("log") > 0),
            (0, true),
            "a run only logs"
        );
        let status = Journal::status(&jp).unwrap();
        assert_eq!((status.lines, status.states["in_flight"]), (Some(3), 3));
        assert_eq!(count("lines"), 0, "--status changes nothing");
        drop(Journal::open(&jp, &inp).unwrap());
        assert_eq!(
            (count("lines"), count("log")),
            (3, 0),
            "folded on reopening"
        );
        assert_eq!(state(&jp, 2).message_id.as_deref(), Some("<2@x>"));
    }

    /// A log row that does not decode is reported as damage, by `open` and by `--status`.
    #[tokio::test]
    async fn a_damaged_log_is_refused_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let (inp, jp) = recorded_abc(dir.path()).await;
        let conn = Connection::open(&jp).unwrap();
        conn.execute("INSERT INTO log (at, body) VALUES (0, x'02ff')", [])
            .unwrap();
        drop(conn);
        for err in [
            Journal::status(&jp).unwrap_err(),
            Journal::open(&jp, &inp).unwrap_err(),
        ] {
            match err {
                JournalError::NotAJournal { why, .. } => {
                    assert!(why.contains("does not decode"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(Journal::all_records(&jp).map(|r| r.len()).ok(), None);
    }

    #[test]
    fn one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path(), "a\n");
        let jp = dir.path().join("j.sqlite");
        let first = Journal::open(&jp, &inp).unwrap();
        assert!(matches!(
            Journal::open(&jp, &inp),
            Err(JournalError::Busy { .. })
        ));
        // --status reads while a run holds the journal.
        assert!(Journal::status(&jp).unwrap().states.is_empty());
        drop(first);
        assert!(Journal::open(&jp, &inp).is_ok(), "released with the run");
    }

    #[test]
    fn status_of_a_missing_file_says_so() {
        let err = Journal::status(Path::new("/nonexistent/j.sqlite")).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }
}
