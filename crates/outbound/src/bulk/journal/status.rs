//! Reading a journal: the summary `--status` shows, every line's record, and states in line
//! order for a re-run ([`StateReader`]). Summaries read through the log (`fold.rs`), so they
//! change nothing and may run while a run writes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::error::JournalError;
use super::fold::read_through_log;
use super::line::{LineRecord, LineState, CHUNK};

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

/// Reads a summary of the journal at `path` without changing it.
pub(super) fn read(path: &Path) -> Result<JournalStatus, JournalError> {
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
pub(super) fn all_records(path: &Path) -> Result<Vec<LineRecord>, JournalError> {
    let conn = read_through_log(path)?;
    records(&conn, "1 ORDER BY line").map_err(|source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads line states in line order, a chunk at a time (short read transactions, so the WAL
/// can be checkpointed meanwhile).
#[derive(Debug)]
pub struct StateReader {
    conn: Connection,
    path: PathBuf,
    buffered: VecDeque<LineRecord>,
    next: u64,
}

impl StateReader {
    /// A second, read-only connection to the journal at `path`, for reading while the
    /// writer writes.
    pub(super) fn open(path: &Path) -> Result<StateReader, JournalError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(StateReader {
            conn,
            path: path.to_path_buf(),
            buffered: VecDeque::new(),
            next: 1,
        })
    }

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
