//! The journal's log: each commit of a run is one row of the `log` table, holding every
//! request of its group (in-flight marks, outcomes, the line count) in a compact binary
//! encoding. The `lines` table is brought up to date from the log when a journal is
//! reopened ([`fold`]), and read through it, without changing the file, by `--status`
//! ([`overlay`]).
//!
//! Why: writing each line's row as the run went cost two SQLite statements per line (an
//! upsert at its mark, an update at its outcome), each rewriting the table's last pages in
//! the WAL. On a busy machine that CPU came straight out of the sending. One insert of one
//! blob per commit writes the same facts with a few hundred bytes per line less and a few
//! thousand statements fewer per hundred thousand lines; the rows are made once, later,
//! when nothing is being sent.
//!
//! The encoding is a sequence of entries, each a tag byte then its fields. Numbers are
//! LEB128 varints; strings are a varint length then UTF-8 bytes; optional fields are a byte
//! 0 (absent) or 1 then the field. A log that does not decode is reported as damaged, never
//! guessed at.

use rusqlite::{params, Connection};

use super::{LineState, Mark, Outcome};
use crate::bulk::input::LineHash;

const MARK: u8 = 1;
const OUTCOME: u8 = 2;
const LINES: u8 = 3;

/// The `lines` table, for the file (`""`) or for a private copy (`"TEMP"`).
pub(super) fn lines_ddl(temp: &str) -> String {
    format!(
        "CREATE {temp} TABLE IF NOT EXISTS lines (
             line INTEGER PRIMARY KEY,
             hash BLOB NOT NULL,
             state TEXT NOT NULL,
             message_id TEXT,
             kind TEXT,
             code INTEGER,
             detail TEXT,
             provider_id TEXT,
             sends INTEGER NOT NULL DEFAULT 0,
             updated INTEGER NOT NULL
         );"
    )
}

/// The `log` table: one row per commit, in commit order.
pub(super) const LOG_DDL: &str =
    "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, body BLOB NOT NULL);";

/// A log row that does not decode: the file was damaged, or written by something else.
#[derive(Debug)]
pub(super) struct Damaged {
    pub(super) seq: i64,
}

/// What folding the log failed on.
#[derive(Debug)]
pub(super) enum FoldError {
    Sqlite(rusqlite::Error),
    Damaged(Damaged),
}

impl From<rusqlite::Error> for FoldError {
    fn from(e: rusqlite::Error) -> FoldError {
        FoldError::Sqlite(e)
    }
}

/// What the journal's writer commits (the records of its queue).
#[derive(Debug)]
pub(super) enum Write {
    /// Lines marked in flight; the task that marks them waits for the commit.
    InFlight { lines: Vec<Mark> },
    /// A line's outcome (not waited for).
    Outcome {
        line: u64,
        /// For a line that may have no row yet (malformed, blank): its hash, for the row.
        hash: Option<LineHash>,
        outcome: Outcome,
    },
    /// The run read the whole input: its line count.
    Lines(u64),
}

/// Appends the writes of one group to `buf`.
pub(super) fn encode(group: &[Write], buf: &mut Vec<u8>) {
    for w in group {
        match w {
            Write::InFlight { lines } => {
                for Mark {
                    line,
                    hash,
                    message_id,
                } in lines
                {
                    buf.push(MARK);
                    varint(buf, *line);
                    buf.extend_from_slice(hash);
                    text(buf, message_id);
                }
            }
            Write::Outcome {
                line,
                hash,
                outcome,
            } => {
                let (state, kind, code, detail, provider_id) = columns(outcome);
                buf.push(OUTCOME);
                varint(buf, *line);
                match hash {
                    Some(hash) => {
                        buf.push(1);
                        buf.extend_from_slice(hash);
                    }
                    None => buf.push(0),
                }
                buf.push(state_code(state));
                optional(buf, kind, text);
                optional(buf, code, |buf, c| varint(buf, u64::from(c)));
                optional(buf, detail, text);
                optional(buf, provider_id, text);
            }
            Write::Lines(n) => {
                buf.push(LINES);
                varint(buf, *n);
            }
        }
    }
}

/// Writes the log's rows into the `lines` and `meta` tables of the file and empties the log,
/// in one transaction (a crash in the middle changes nothing). Returns how many rows it
/// folded.
pub(super) fn fold(conn: &mut Connection) -> Result<u64, FoldError> {
    let tx = conn.transaction()?;
    let folded = apply_log(&tx)?;
    tx.execute("DELETE FROM log", [])?;
    tx.commit()?;
    Ok(folded)
}

/// Makes private (TEMP) copies of `lines` and `meta` with the log applied, which shadow the
/// file's tables for the rest of this connection's life: a read-only view of the journal as
/// it would be after [`fold`], while a run may still be writing it.
pub(super) fn overlay(conn: &Connection) -> Result<(), FoldError> {
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

/// One decoded entry, borrowing from the row's blob.
#[derive(Debug, PartialEq)]
enum Entry<'a> {
    Mark {
        line: u64,
        hash: &'a [u8],
        message_id: &'a str,
    },
    Outcome {
        line: u64,
        hash: Option<&'a [u8]>,
        state: LineState,
        kind: Option<&'a str>,
        code: Option<u32>,
        detail: Option<&'a str>,
        provider_id: Option<&'a str>,
    },
    Lines(u64),
}

fn decode(body: &[u8]) -> Option<Vec<Entry<'_>>> {
    let mut r = Reader { rest: body };
    let mut entries = Vec::new();
    while let Some(tag) = r.byte() {
        entries.push(match tag {
            MARK => Entry::Mark {
                line: r.varint()?,
                hash: r.hash()?,
                message_id: r.text()?,
            },
            OUTCOME => Entry::Outcome {
                line: r.varint()?,
                hash: r.optional(Reader::hash)?,
                state: parse_state(r.byte()?)?,
                kind: r.optional(Reader::text)?,
                code: r.optional(|r| r.varint().and_then(|c| u32::try_from(c).ok()))?,
                detail: r.optional(Reader::text)?,
                provider_id: r.optional(Reader::text)?,
            },
            LINES => Entry::Lines(r.varint()?),
            _ => return None,
        });
    }
    Some(entries)
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

/// An outcome's columns: state, kind, code, detail, provider id.
fn columns(
    o: &Outcome,
) -> (
    LineState,
    Option<&str>,
    Option<u32>,
    Option<&str>,
    Option<&str>,
) {
    match o {
        Outcome::Delivered { provider_id } => (
            LineState::Delivered,
            None,
            None,
            None,
            provider_id.as_deref(),
        ),
        Outcome::Failed { kind, code, detail } => (
            LineState::Failed,
            Some(*kind),
            *code,
            Some(detail.as_str()),
            None,
        ),
        Outcome::Ambiguous { kind, detail } => (
            LineState::Ambiguous,
            Some(*kind),
            None,
            Some(detail.as_str()),
            None,
        ),
        Outcome::Unsent => (LineState::Pending, None, None, None, None),
        Outcome::Malformed { detail } => (
            LineState::Malformed,
            None,
            None,
            Some(detail.as_str()),
            None,
        ),
        Outcome::Blank => (LineState::Blank, None, None, None, None),
    }
}

const STATES: [LineState; 7] = [
    LineState::Pending,
    LineState::InFlight,
    LineState::Delivered,
    LineState::Failed,
    LineState::Ambiguous,
    LineState::Malformed,
    LineState::Blank,
];

fn state_code(state: LineState) -> u8 {
    STATES.iter().position(|s| *s == state).unwrap_or(0) as u8
}

fn parse_state(code: u8) -> Option<LineState> {
    STATES.get(usize::from(code)).copied()
}

fn varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn text(buf: &mut Vec<u8>, s: &str) {
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn optional<T>(buf: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => {
            buf.push(1);
            write(buf, v);
        }
        None => buf.push(0),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn hash(&mut self) -> Option<&'a [u8]> {
        self.take(std::mem::size_of::<LineHash>())
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// `Some(None)` for an absent field, `None` for a damaged one.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.byte()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_request_decodes_as_it_was_encoded() {
        let group = vec![
            Write::InFlight {
                lines: vec![Mark {
                    line: 300,
                    hash: [7; 16],
                    message_id: "<bulk.1.300@example.com>".into(),
                }],
            },
            Write::Outcome {
                line: 300,
                hash: None,
                outcome: Outcome::Failed {
                    kind: "transient",
                    code: Some(451),
                    detail: "451 4.3.0 try later – é".into(),
                },
            },
            Write::Outcome {
                line: u64::MAX,
                hash: Some([9; 16]),
                outcome: Outcome::Delivered {
                    provider_id: Some("Q1".into()),
                },
            },
            Write::Lines(1 << 40),
        ];
        let mut buf = Vec::new();
        encode(&group, &mut buf);
        assert_eq!(
            decode(&buf).unwrap(),
            [
                Entry::Mark {
                    line: 300,
                    hash: &[7; 16],
                    message_id: "<bulk.1.300@example.com>"
                },
                Entry::Outcome {
                    line: 300,
                    hash: None,
                    state: LineState::Failed,
                    kind: Some("transient"),
                    code: Some(451),
                    detail: Some("451 4.3.0 try later – é"),
                    provider_id: None
                },
                Entry::Outcome {
                    line: u64::MAX,
                    hash: Some(&[9; 16]),
                    state: LineState::Delivered,
                    kind: None,
                    code: None,
                    detail: None,
                    provider_id: Some("Q1")
                },
                Entry::Lines(1 << 40),
            ]
        );
        for state in STATES {
            assert_eq!(parse_state(state_code(state)), Some(state));
        }
    }

    /// A log cut short or with a byte changed is refused, never half read.
    #[test]
    fn a_damaged_body_does_not_decode() {
        let mut buf = Vec::new();
        encode(
            &[Write::InFlight {
                lines: vec![Mark {
                    line: 1,
                    hash: [0; 16],
                    message_id: "<1@x>".into(),
                }],
            }],
            &mut buf,
        );
        for cut in 1..buf.len() {
            assert_eq!(decode(&buf[..cut]), None, "cut at {cut}");
        }
        let mut bad_tag = buf.clone();
        bad_tag[0] = 99;
        assert_eq!(decode(&bad_tag), None);
        assert_eq!(decode(&[OUTCOME, 1, 0, 42]), None, "no state 42");
        assert_eq!(decode(&[0xff; 11]), None, "a varint longer than 64 bits");
    }
}
