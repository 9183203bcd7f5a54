#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound bulk` end to end with the `file` transport (hermetic: each message becomes a
//! `.eml` file in a temporary directory): the summary, exit codes, a re-run with the journal,
//! a changed input, `--status`, and the plain progress lines.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn outbound(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbound"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "MAILER_DSN",
            format!("file://{}/sent?from=app@example.com", dir.display()),
        );
    cmd
}

fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("sent"))
        .map(|rd| rd.filter_map(Result::ok).count())
        .unwrap_or(0)
}

fn run(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = outbound(dir).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        json,
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn a_run_a_rerun_and_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 1..=30 {
        text.push_str(&format!(
            "{{\"to\":\"u{i}@example.com\",\"subject\":\"s{i}\",\"text\":\"hello\"}}\n"
        ));
    }
    text.push_str("{\"to\": [1]}\n");
    std::fs::write(dir.path().join("in.jsonl"), &text).unwrap();
    let args = [
        "bulk",
        "--input",
        "in.jsonl",
        "--journal",
        "j.sqlite",
        "--concurrency",
        "3",
        "--json",
    ];
    let (code, v, all) = run(dir.path(), &args);
    assert_eq!(code, 65, "a malformed line: {all}");
    assert_eq!(v["delivered"], 30, "{v}");
    assert_eq!(v["malformed_lines"][0]["line"], 31, "{v}");
    assert_eq!(eml_count(dir.path()), 30);

    let (code, v, all) = run(dir.path(), &args);
    assert_eq!(code, 65, "{all}");
    assert_eq!(
        (v["delivered"].as_u64(), v["already_delivered"].as_u64()),
        (Some(0), Some(30))
    );
    assert_eq!(eml_count(dir.path()), 30, "nothing sent twice");

    let (code, v, _) = run(
        dir.path(),
        &["bulk", "--status", "--journal", "j.sqlite", "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(v["states"]["delivered"], 30, "{v}");
    assert_eq!(v["states"]["malformed"], 1, "{v}");

    // The same journal with another input is refused, and nothing is sent.
    std::fs::write(dir.path().join("in.jsonl"), text.replace("u7@", "x7@")).unwrap();
    let (code, v, _) = run(dir.path(), &args);
    assert_eq!(code, 65);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 7"), "{message}");
    assert_eq!(eml_count(dir.path()), 30);
}

#[test]
fn text_summary_progress_lines_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"to\":\"a@example.com\",\"text\":\"x\"}\n{\"to\":\"b@example.com\",\"text\":\"y\"}\n",
    )
    .unwrap();
    let (code, _, all) = run(
        dir.path(),
        &["bulk", "--input", "in.jsonl", "--progress-every", "0"],
    );
    assert_eq!(code, 0, "{all}");
    assert!(
        all.contains("2 delivered, 0 already delivered, 0 failed"),
        "{all}"
    );

    // Missing --input, and --status without --journal, are usage errors.
    assert_eq!(run(dir.path(), &["bulk"]).0, 64);
    assert_eq!(run(dir.path(), &["bulk", "--status"]).0, 64);
    let (code, _, all) = run(
        dir.path(),
        &["bulk", "--status", "--journal", "none.sqlite"],
    );
    assert_eq!(code, 65, "{all}");
    assert!(all.contains("no such file"), "{all}");
}
