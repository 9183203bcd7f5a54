#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound bulk` against the real Postfix on port 25 (every message lands in the shared
//! Maildir, counted by Message-ID with the testkit's `Maildir`).
//!
//! The must-show test: 5,000 messages, `kill -9` three times at random points, each time
//! re-run with the same journal. Every line is delivered exactly once, except the lines the
//! journal reports in doubt, which number at most `concurrency × 2 × batch` per kill (the
//! documented bound) and are each delivered at most once.
//!
//! Without Postfix these tests panic saying how to start it; they never skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outbound::bulk::{Journal, LineState};
use outbound_live_tests::outbound_bin;
use outbound_testkit::{unique, Maildir, TestEnv};
use serde_json::Value;

const CONCURRENCY: u64 = 8;
/// `--batch`: lines a sending task marks in flight per commit.
const BATCH: u64 = 4;
/// The documented bound on lines in doubt after one interruption.
const BOUND: u64 = CONCURRENCY * 2 * BATCH;

fn dsn(env: &TestEnv) -> String {
    format!(
        "smtp://{}:{}?tls=none&pool_size={CONCURRENCY}&from=bulk@{}",
        env.host(),
        env.port_plain(),
        env.domain()
    )
}

fn bulk_command(env: &TestEnv, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(outbound_bin());
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["bulk", "--dsn", &dsn(env), "--progress-every", "0"])
        .args(args);
    cmd
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `n` lines to distinct recipients in the catch-all domain, tagged with `tag`.
fn write_input(dir: &Path, tag: &str, n: usize) -> PathBuf {
    let env = TestEnv::load_file();
    let mut text = String::with_capacity(n * 160);
    for i in 1..=n {
        text.push_str(&format!(
            "{{\"to\":\"{tag}-{i}@{d}\",\"subject\":\"{tag} {i}\",\"text\":\"line {i} of the \
             bulk test {tag}\"}}\n",
            d = env.domain()
        ));
    }
    let path = dir.join("input.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    std::env::var("BULK_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(nanos)
}

/// xorshift: enough to pick kill points (the seed is printed to replay a failure).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn delivered(journal: &Path) -> u64 {
    Journal::status(journal)
        .ok()
        .and_then(|s| s.states.get("delivered").copied())
        .unwrap_or(0)
}

/// Starts a run and SIGKILLs it once the journal records `target` deliveries.
fn run_and_kill(env: &TestEnv, dir: &Path, input: &Path, journal: &Path, target: u64) {
    let mut child = bulk_command(
        env,
        dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--concurrency",
            &CONCURRENCY.to_string(),
            "--batch",
            &BATCH.to_string(),
            "--json",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before reaching {target} deliveries");
        }
        if delivered(journal) >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress to {target} deliveries"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status}");
}

#[test]
fn sigkill_three_times_then_every_line_is_delivered_once_or_listed_in_doubt() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().unwrap();
    let tag = unique("bulk-kill");
    const LINES: u64 = 5000;
    let input = write_input(dir.path(), &tag, LINES as usize);
    let journal = dir.path().join("run.journal");
    let mut rng = seed() | 1;
    println!("kill points from seed {rng} (BULK_KILL_SEED to replay)");

    // Three kills at random points spread over the run: in (0-30%], (30-60%], (60-90%] of
    // the lines, each past what the previous runs delivered.
    let started = Instant::now();
    let mut kills = Vec::new();
    for k in 0..3u64 {
        let low = (LINES * 3 * k / 10).max(delivered(&journal)) + 50;
        let high = LINES * 3 * (k + 1) / 10;
        let target = low + next(&mut rng) % (high.saturating_sub(low).max(1));
        run_and_kill(&env, dir.path(), &input, &journal, target);
        let at = delivered(&journal);
        kills.push(at);
        println!("kill {}: at {at} delivered lines", k + 1);
    }
    let in_flight_after_kills = Journal::all_records(&journal)
        .unwrap()
        .iter()
        .filter(|r| r.state == LineState::InFlight)
        .count() as u64;
    assert!(
        in_flight_after_kills <= BOUND,
        "the last kill left {in_flight_after_kills} lines in flight (bound {BOUND})"
    );

    // The final run, to the end.
    let out = bulk_command(
        &env,
        dir.path(),
        &[
            "--input",
            input.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--concurrency",
            &CONCURRENCY.to_string(),
            "--batch",
            &BATCH.to_string(),
            "--json",
        ],
    )
    .output()
    .unwrap();
    let summary = json_of(&out);
    println!("final run: {summary}");
    println!("total time with three kills: {:?}", started.elapsed());
    let in_doubt: Vec<(u64, String)> = summary["in_doubt_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "interrupted", "{d}");
            (
                d["line"].as_u64().unwrap(),
                d["message_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(summary["in_doubt"].as_u64().unwrap(), in_doubt.len() as u64);
    assert!(
        in_doubt.len() as u64 <= 3 * BOUND,
        "{} lines in doubt after 3 kills; the bound is 3 x {BOUND}: {in_doubt:?}",
        in_doubt.len()
    );
    assert_eq!(summary["malformed"], 0);
    assert_eq!(summary["failed"], serde_json::json!({}), "{summary}");
    let code = out.status.code().unwrap();
    assert_eq!(code, if in_doubt.is_empty() { 0 } else { 75 }, "{summary}");

    // The journal: every line delivered once (one send), or in doubt.
    let records = Journal::all_records(&journal).unwrap();
    assert_eq!(records.len() as u64, LINES);
    let doubt_lines: Vec<u64> = in_doubt.iter().map(|d| d.0).collect();
    for r in &records {
        if doubt_lines.contains(&r.line) {
            assert_eq!(r.state, LineState::Ambiguous, "{r:?}");
        } else {
            assert_eq!((r.state, r.sends), (LineState::Delivered, 1), "{r:?}");
        }
    }
    let id_of: HashMap<u64, String> = records
        .iter()
        .map(|r| (r.line, r.message_id.clone().unwrap()))
        .collect();

    // The Maildir: every delivered line exactly once; in-doubt lines at most once.
    let mut maildir = Maildir::new(env.maildir());
    let expected: Vec<String> = records
        .iter()
        .filter(|r| !doubt_lines.contains(&r.line))
        .map(|r| id_of[&r.line].clone())
        .collect();
    maildir.wait_for(&expected, Duration::from_secs(180));
    // Late duplicates would still be in Postfix's queue: give it a moment, then count (one
    // more scan; `files_for` would rescan the shared Maildir for every id).
    std::thread::sleep(Duration::from_secs(2));
    let files = maildir.wait_for(&expected, Duration::from_secs(10));
    for id in &expected {
        assert_eq!(files[id].len(), 1, "{id} delivered more than once");
    }
    let mut arrived = 0;
    for (line, id) in &in_doubt {
        let copies = maildir.files_for(id).len();
        assert!(
            copies <= 1,
            "line {line} ({id}) in doubt arrived {copies} times"
        );
        arrived += copies;
    }
    println!(
        "{} in doubt after kills at {kills:?}: {arrived} of them had in fact arrived, listed: \
         {in_doubt:?}",
        in_doubt.len()
    );
}

#[test]
fn malformed_lines_are_reported_with_their_numbers_and_counted() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().unwrap();
    let tag = unique("bulk-malformed");
    let d = env.domain();
    let lines = [
        format!(r#"{{"to":"{tag}-1@{d}","text":"one"}}"#),
        "{\"to\": ".to_string(),
        format!(r#"{{"to":["{tag}-2@{d}","{tag}-2b@{d}"],"subject":"two","html":"<p>two</p>"}}"#),
        format!(r#"{{"to":"{tag}-x@{d}","subjct":"typo"}}"#),
        String::new(),
        format!(r#"{{"to":"{tag}-3@{d}","text":"three","headers":{{"X-Bulk":"yes"}}}}"#),
    ];
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let journal = dir.path().join("j.sqlite");
    let out = bulk_command(
        &env,
        dir.path(),
        &[
            "--input",
            input.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--json",
        ],
    )
    .output()
    .unwrap();
    let summary = json_of(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{summary} {stderr}");
    assert_eq!(summary["delivered"], 3, "{summary}");
    assert_eq!(summary["malformed"], 2, "{summary}");
    let malformed: Vec<u64> = summary["malformed_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["line"].as_u64().unwrap())
        .collect();
    assert_eq!(malformed, [2, 4]);
    assert!(stderr.contains("line 2: malformed"), "{stderr}");
    assert!(
        stderr.contains("line 4: malformed") && stderr.contains("subjct"),
        "{stderr}"
    );

    let records = Journal::all_records(&journal).unwrap();
    let ids: Vec<String> = records
        .iter()
        .filter(|r| r.state == LineState::Delivered)
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(&ids, Duration::from_secs(60));
    // Line 3 has two recipients: two copies of one message (one per mailbox), which Postfix
    // delivers one after the other.
    let line3 = records
        .iter()
        .find(|r| r.line == 3)
        .and_then(|r| r.message_id.clone())
        .unwrap();
    maildir.wait_for_copies(&line3, 2, Duration::from_secs(60));
    let files: Vec<_> = ids.iter().map(|id| maildir.files_for(id)).collect();
    let copies: usize = files.iter().map(Vec::len).sum();
    assert_eq!(copies, 4, "{files:?}");

    // --status summarises the same journal.
    let out = Command::new(outbound_bin())
        .args([
            "bulk",
            "--status",
            "--json",
            "--journal",
            journal.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let status = json_of(&out);
    assert_eq!(status["lines"], 6);
    assert_eq!(status["states"]["delivered"], 3, "{status}");
    assert_eq!(status["states"]["malformed"], 2, "{status}");
    assert_eq!(status["states"]["blank"], 1, "{status}");
    assert_eq!(status["malformed"][0]["line"], 2);
    let text = Command::new(outbound_bin())
        .args(["bulk", "--status", "--journal", journal.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("delivered: 3") && text.contains("malformed line 4"),
        "{text}"
    );
}

#[test]
fn a_changed_input_is_refused_and_nothing_is_sent() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().unwrap();
    let tag = unique("bulk-changed");
    let input = write_input(dir.path(), &tag, 5);
    let journal = dir.path().join("j.sqlite");
    let args = [
        "--input",
        input.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--json",
    ];
    let out = bulk_command(&env, dir.path(), &args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", json_of(&out));
    let before = Journal::all_records(&journal).unwrap();

    // Line 3 edited: the journal belongs to another input now.
    let text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(&input, text.replacen("line 3 of", "line three of", 1)).unwrap();
    let out = bulk_command(&env, dir.path(), &args).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    let v = json_of(&out);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 3") && message.contains("another input"),
        "{message}"
    );
    assert_eq!(
        Journal::all_records(&journal).unwrap(),
        before,
        "nothing changed"
    );

    // The original input again: everything is already delivered, nothing is sent.
    std::fs::write(&input, text).unwrap();
    let out = bulk_command(&env, dir.path(), &args).output().unwrap();
    let v = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(
        (v["delivered"].as_u64(), v["already_delivered"].as_u64()),
        (Some(0), Some(5))
    );
    let ids: Vec<String> = before
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(&ids, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    for id in &ids {
        assert_eq!(maildir.files_for(id).len(), 1, "{id}");
    }
}
