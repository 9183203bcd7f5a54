//! The journal's tests across its parts: open, write, reopen, check, read.

#![allow(clippy::unwrap_used)]
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

use super::log::{self, SCHEMA_VERSION};
use super::writer::OUTCOME_DELAY;
use super::*;
use crate::bulk::input::{line_hash, LineHash};

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
