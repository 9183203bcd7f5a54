//! The journal's format: its tables, and its log. Each commit of a run is one row of the
//! `log` table, holding every write of its group (in-flight marks, outcomes, the line count)
//! in a compact binary encoding. The `lines` table is brought up to date from the log when a
//! journal is reopened, and read through it, without changing the file, by `--status` (both
//! in `fold.rs`).
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

use super::line::{LineState, Mark, Outcome};
use crate::bulk::input::LineHash;

/// The journal format this code writes. Format 2 added the log; format 1 journals (rows
/// written as the run went, or filled up front) are read as they are and upgraded on open.
pub(super) const SCHEMA_VERSION: &str = "2";

/// The format before the log, which this code still opens.
pub(super) const SCHEMA_WITHOUT_LOG: &str = "1";

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

/// One decoded entry, borrowing from the row's blob.
#[derive(Debug, PartialEq)]
pub(super) enum Entry<'a> {
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

/// The entries of one log row's body; `None` if it does not decode (damaged).
pub(super) fn decode(body: &[u8]) -> Option<Vec<Entry<'_>>> {
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
