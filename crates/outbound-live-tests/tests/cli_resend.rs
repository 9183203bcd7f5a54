#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound config`, `check` and `send` with Dify's Resend variables, against the `resend-local`
//! emulator (npm; `testenv/resend-local/server.sh start`, which `scripts/test` runs). The
//! emulator accepts any key starting with `re_` and refuses others with 401. The API key is a
//! canary that must never appear in any output.
//!
//! Without the emulator these tests panic with how to start it; they never skip.

use assert_cmd::Command;
use serde_json::Value;

const KEY: &str = "re_canary_cli_7c1d5e9a";

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

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn outbound(key: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(outbound_live_tests::outbound_bin())
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MAIL_TYPE", "resend")
        .env("RESEND_API_KEY", key)
        .env("RESEND_API_URL", emulator_url())
        .env("MAIL_DEFAULT_SEND_FROM", "Acme <noreply@acme.example>")
        .args(args)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().expect("exited with a code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(key) && !run.stderr.contains(key),
        "the API key leaked: {} {}",
        run.stdout,
        run.stderr
    );
    run
}

#[test]
fn config_names_the_variables_and_redacts_the_key() {
    let run = outbound(KEY, &["config"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("transport: resend (from MAIL_TYPE)"),
        "{}",
        run.stdout
    );
    let key_row = run
        .stdout
        .lines()
        .find(|l| l.contains("RESEND_API_KEY"))
        .unwrap();
    assert!(key_row.contains("********"), "{key_row}");
    assert!(run.stdout.contains("RESEND_API_URL"), "{}", run.stdout);
}

#[test]
fn check_and_send_go_through_the_emulator() {
    let run = outbound(KEY, &["check"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("OK "), "{}", run.stdout);

    let run = outbound(
        KEY,
        &[
            "send",
            "--to",
            "ada@example.com",
            "--subject",
            "CLI via Resend",
            "--text",
            "hello",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(json["status"], "sent");
    assert_eq!(json["transport"], "resend");
    let id = json["provider_id"].as_str().expect("Resend's email id");
    assert!(!id.is_empty());
    assert_eq!(json["recipients"]["accepted"][0], "ada@example.com");
}

#[test]
fn a_refused_key_exits_77() {
    let run = outbound(
        "not-a-resend-key-3b8f",
        &["send", "--to", "ada@example.com", "--text", "x"],
    );
    assert_eq!(run.code, 77, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
}
