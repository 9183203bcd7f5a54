//! The fold: the log's rows (see `log.rs`) applied, in commit order, to the `lines` and
//! `meta` tables. A reopened journal is folded for good ([`fold`]: its rows are then up to
//! date and its log empty); `--status` and the tests read through the log instead
//! ([`read_through_log`]: private copies, the file untouched, while a run may be writing it).

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};

use super::error::JournalError;
#[cfg(test)]
use super::line::LineState;
use super::log::{decode, lines_ddl, Entry};

/// A log row that does not decode: the file was damaged, or written by something else.
#[derive(Debug)]
struct Damaged {
    seq: i64,
}

/// What folding the log failed on.
#[derive(Debug)]
enum FoldError {
    Sqlite(rusqlite::Error),
    Damaged(Damaged),
}

impl From<rusqlite::Error> for FoldError {
    fn from(e: rusqlite::Error) -> FoldError {
        FoldError::Sqlite(e)
    }
}

/// Writes the log's rows into the `lines` and `meta` tables of the journal at `path` and
/// empties the log, in one transaction (a crash in the middle changes nothing). Returns how
/// many rows it folded.
pub(super) fn fold(conn: &mut Connection, path: &Path) -> Result<u64, JournalError> {
    fold_log(conn).map_err(|e| fold_error(path, e))
}

fn fold_log(conn: &mut Connection) -> Result<u64, FoldError> {
    let tx = conn.transaction()?;
    let folded = apply_log(&tx)?;
    tx.execute("DELETE FROM log", [])?;
    tx.commit()?;
    Ok(folded)
}

/// Makes private (TEMP) copies of `lines` and `meta` with the log applied, which shadow the
/// file's tables for the rest of this connection's life: a read-only view of the journal as
/// it would be after [`fold`], while a run may still be writing it.
fn overlay(conn: &Connection) -> Result<(), FoldError> {
    conn.execute_batch(&format!(
        "{}
         CREATE TEMP TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO temp.lines SELECT * FROM main.lines;
         INSERT INTO temp.meta SELECT * FROM main.meta;",
        lines_ddl("TEMP")
    ))?;
    let has_log: bool = conn.query_row(
        "SELECT count(*) > 0 FROM main.sqlite_master WHERE type = 'table' AND name = 'log'",
        [],
        |r| r.get(0),
    )?;
    if has_log {
        apply_log(conn)?;
    }
    Ok(())
}

/// Applies every log row, in order, to the (unqualified) `lines` and `meta` tables.
fn apply_log(conn: &Connection) -> Result<u64, FoldError> {
    let mut rows = conn.prepare("SELECT seq, at, body FROM main.log ORDER BY seq")?;
    let mut rows = rows.query([])?;
    let mut statements = Statements::new(conn)?;
    let mut folded = 0;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let at: i64 = row.get(1)?;
        let body = row
            .get_ref(2)?
            .as_blob()
            .map_err(|_| FoldError::Damaged(Damaged { seq }))?;
        let entries = decode(body).ok_or(FoldError::Damaged(Damaged { seq }))?;
        for entry in entries {
            statements.apply(&entry, at)?;
        }
        folded += 1;
    }
    Ok(folded)
}

/// A read-only connection to the journal at `path` that sees its log applied (a private
/// copy of the tables; the file is not changed, and a run may be writing it meanwhile).
pub(super) fn read_through_log(path: &Path) -> Result<Connection, JournalError> {
    let sql = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    // One read transaction, so the copy and the log are of the same moment.
    conn.execute_batch("BEGIN").map_err(sql)?;
    overlay(&conn).map_err(|e| fold_error(path, e))?;
    conn.execute_batch("COMMIT").map_err(sql)?;
    Ok(conn)
}

/// A fold's failure, as the journal's error.
fn fold_error(path: &Path, e: FoldError) -> JournalError {
    match e {
        FoldError::Sqlite(source) => JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
        FoldError::Damaged(d) => JournalError::NotAJournal {
            path: path.to_path_buf(),
            why: format!(
                "its log row {} does not decode (the file is damaged)",
                d.seq
            ),
        },
    }
}

/// The statements a fold runs, prepared once.
struct Statements<'c> {
    mark: rusqlite::Statement<'c>,
    outcome: rusqlite::Statement<'c>,
    first_outcome: rusqlite::Statement<'c>,
    lines: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Statements<'c>> {
        Ok(Statements {
            // The row is made at the line's first mark (or first outcome, for a line never
            // sent); each mark counts a send.
            mark: conn.prepare(
                "INSERT INTO lines (line, hash, state, message_id, sends, updated) \
                 VALUES (?1, ?2, 'in_flight', ?3, 1, ?4) \
                 ON CONFLICT (line) DO UPDATE SET state = 'in_flight', \
                 message_id = excluded.message_id, kind = NULL, code = NULL, detail = NULL, \
                 sends = sends + 1, updated = excluded.updated",
            )?,
            outcome: conn.prepare(
                "UPDATE lines SET state = ?2, kind = ?3, code = ?4, detail = ?5, \
                 provider_id = coalesce(?6, provider_id), updated = ?7 WHERE line = ?1",
            )?,
            first_outcome: conn.prepare(
                "INSERT INTO lines (line, hash, state, kind, code, detail, provider_id, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (line) DO UPDATE SET state = excluded.state, kind = excluded.kind, \
                 code = excluded.code, detail = excluded.detail, \
                 provider_id = coalesce(excluded.provider_id, provider_id), \
                 updated = excluded.updated",
            )?,
            lines: conn.prepare(
                "INSERT INTO meta (key, value) VALUES ('lines', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?,
        })
    }

    fn apply(&mut self, entry: &Entry<'_>, at: i64) -> rusqlite::Result<()> {
        match *entry {
            Entry::Mark {
                line,
                hash,
                message_id,
            } => self.mark.execute(params![line, hash, message_id, at])?,
            Entry::Outcome {
                line,
                hash: Some(hash),
                state,
                kind,
                code,
                detail,
                provider_id,
            } => self.first_outcome.execute(params![
                line,
                hash,
                state.as_str(),
                kind,
                code,
                detail,
                provider_id,
                at
            ])?,
            Entry::Outcome {
                line,
                hash: None,
                state,
                kind,
                code,
                detail,
                provider_id,
            } => self.outcome.execute(params![
                line,
                state.as_str(),
                kind,
                code,
                detail,
                provider_id,
                at
            ])?,
            Entry::Lines(n) => self.lines.execute([n.to_string()])?,
        };
        Ok(())
    }
}

/// How many lines are in flight in the journal at `path`, counted in memory from its rows
/// and its log (cheap enough to ask before every send of a test run).
#[cfg(test)]
pub(crate) fn lines_in_flight(path: &std::path::Path) -> u64 {
    use std::collections::HashMap;
    let Ok(conn) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    let mut states: HashMap<u64, bool> = HashMap::new();
    let read = || -> rusqlite::Result<Vec<(u64, String)>> {
        let mut stmt = conn.prepare("SELECT line, state FROM lines")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    for (line, state) in read().unwrap_or_default() {
        states.insert(line, state == "in_flight");
    }
    let bodies = || -> rusqlite::Result<Vec<Vec<u8>>> {
        let mut stmt = conn.prepare("SELECT body FROM log ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    for body in bodies().unwrap_or_default() {
        for entry in decode(&body).unwrap_or_default() {
            match entry {
                Entry::Mark { line, .. } => states.insert(line, true),
                Entry::Outcome { line, state, .. } => {
                    states.insert(line, state == LineState::InFlight)
                }
                Entry::Lines(_) => None,
            };
        }
    }
    states.values().filter(|in_flight| **in_flight).count() as u64
}
