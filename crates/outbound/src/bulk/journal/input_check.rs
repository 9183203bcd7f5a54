//! The input check: a re-run against a journal must give the input the journal was made
//! for. Mixing two inputs could skip or resend the wrong messages, so a difference is refused
//! ([`JournalError::InputChanged`], with the first line that differs).

use std::io::BufReader;
use std::path::Path;

use rusqlite::{params, Connection};

use super::error::JournalError;
use super::line::CHUNK;
use crate::bulk::input::{line_hash, LineReader, MAX_LINE_BYTES};

/// Checks `input` against the rows recorded: each line with a row must hash the same, the
/// input must reach the last line with a row, and when the line count is known (a run read
/// the whole input) it must match. Lines without a row were never acted on.
pub(super) fn compare(
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
