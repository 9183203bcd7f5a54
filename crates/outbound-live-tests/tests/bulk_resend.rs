#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound bulk` through Resend (the resend-local emulator): lines a `kill -9` left in
//! flight are resent at once by the next run, with the same Message-ID and body, so the same
//! Idempotency-Key (Resend derives it from both; the key each request went out with is read
//! from the command's debug log of both runs).
//!
//! Without the emulator this test panics with how to start it; it never skips.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outbound::bulk::{Journal, LineState};
use outbound_live_tests::outbound_bin;
use serde_json::Value;

const KEY: &str = "re_canary_bulk_4f2a9c";

fn emulator_url() -> String {
    let dir =
        std::env::var("OUTBOUND_TESTENV_DIR").unwrap_or_else(|_| "/tmp/outbound-testenv".into());
    let env = std::fs::read_to_string(format!("{dir}/resend-local/env")).unwrap_or_else(|_| {
        panic!(
            "the Resend emulator is not running ({dir}/resend-local/env is missing): run \
             testenv/resend-local/server.sh start (scripts/test does)"
        )
    });
    env.lines()
        .find_map(|l| l.strip_prefix("OUTBOUND_RESEND_LOCAL_URL="))
        .expect("OUTBOUND_RESEND_LOCAL_URL in the emulator's env file")
        .trim()
        .to_string()
}

fn bulk(dir: &Path, input: &Path, journal: &Path) -> Command {
    let mut cmd = Command::new(outbound_bin());
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MAIL_TYPE", "resend")
        .env("RESEND_API_KEY", KEY)
        .env("RESEND_API_URL", emulator_url())
        .env("MAIL_DEFAULT_SEND_FROM", "Acme <noreply@acme.example>")
        .args([
            "-vv",
            "bulk",
            "--progress-every",
            "0",
            "--concurrency",
            "4",
            "--batch",
            "2",
            "--json",
        ])
        .args(["--input", input.to_str().unwrap()])
        .args(["--journal", journal.to_str().unwrap()]);
    cmd
}

/// Message-ID -> every Idempotency-Key it was sent with, from the debug lines
/// `sending through Resend message_id=<…> idempotency_key=outbound-…`.
fn keys_in(log: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("sending through Resend")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(id), Some(key)) = (field("message_id="), field("idempotency_key=")) {
            out.entry(id).or_default().push(key);
        }
    }
    out
}

fn delivered(journal: &Path) -> u64 {
    Journal::status(journal)
        .ok()
        .and_then(|s| s.states.get("delivered").copied())
        .unwrap_or(0)
}

#[test]
fn lines_in_flight_at_a_kill_are_resent_at_once_with_the_same_key() {
    emulator_url();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text: String = (1..=400)
        .map(|i| {
            format!(
                "{{\"to\":\"user{i}@example.com\",\"subject\":\"Invite {i}\",\"html\":\"<p>Hello {i}</p>\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();

    // Kill while some lines are in flight (almost always: 4 requests are open at any time).
    let mut attempt = 0;
    let (journal, first_log, in_flight) = loop {
        attempt += 1;
        assert!(attempt <= 5, "no kill left a line in flight in 5 attempts");
        let journal = dir.path().join(format!("run{attempt}.journal"));
        let log_path = dir.path().join(format!("first{attempt}.log"));
        let mut child = bulk(dir.path(), &input, &journal)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered(&journal) < 40 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before the kill"
            );
            assert!(Instant::now() < deadline, "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let in_flight: Vec<(u64, String)> = Journal::all_records(&journal)
            .unwrap()
            .into_iter()
            .filter(|r| r.state == LineState::InFlight)
            .map(|r| (r.line, r.message_id.unwrap()))
            .collect();
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(!log.contains(KEY), "the API key leaked into the log");
        if in_flight
            .iter()
            .any(|(_, id)| keys_in(&log).contains_key(id))
        {
            break (journal, log, in_flight);
        }
    };
    assert!(
        in_flight.len() <= 16,
        "bound: concurrency x 2 x batch; {in_flight:?}"
    );

    let out = bulk(dir.path(), &input, &journal).output().unwrap();
    let second_log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!second_log.contains(KEY), "the API key leaked into the log");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{summary}\n{second_log}");
    assert_eq!(
        summary["in_doubt"], 0,
        "nothing is left in doubt on Resend: {summary}"
    );
    assert_eq!(
        summary["resent"].as_u64(),
        Some(in_flight.len() as u64),
        "{summary}"
    );

    let (first, second) = (keys_in(&first_log), keys_in(&second_log));
    let mut compared = 0;
    for (line, id) in &in_flight {
        let again = second
            .get(id)
            .unwrap_or_else(|| panic!("line {line} ({id}) was not resent"));
        assert_eq!(again.len(), 1, "{id} resent once");
        if let Some(before) = first.get(id) {
            assert_eq!(
                before, again,
                "line {line}: the resent request has another key"
            );
            compared += 1;
        }
    }
    assert!(compared >= 1);
    // Lines delivered by the killed run were not sent again.
    let records = Journal::all_records(&journal).unwrap();
    for r in &records {
        assert_eq!(r.state, LineState::Delivered, "{r:?}");
        let expected_sends = if in_flight.iter().any(|(l, _)| *l == r.line) {
            2
        } else {
            1
        };
        assert_eq!(r.sends, expected_sends, "{r:?}");
        if expected_sends == 1 {
            let id = r.message_id.as_ref().unwrap();
            assert_eq!(
                first.get(id).map_or(0, Vec::len) + second.get(id).map_or(0, Vec::len),
                1,
                "{id}"
            );
        }
        assert!(r.provider_id.is_some(), "Resend's id is recorded: {r:?}");
    }
}
