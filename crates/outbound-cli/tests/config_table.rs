#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound config` against the library's settings table: every row is a key of the table
//! with its variables, doc and default, and a variable that is set is never shown as unset
//! nor silently dropped.

use assert_cmd::Command;
use serde_json::Value;

/// `outbound` with a clean environment (only PATH and `vars`), in a temporary directory.
fn outbound(vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbound"));
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_json(vars: &[(&str, &str)]) -> Value {
    let (_, stdout, stderr) = outbound(vars, &["config", "--json"]);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

/// The JSON rows of `outbound config` are the table's keys for the kind, in order, each with
/// its variables, doc and secrecy, and a default shown as the table gives it.
fn rows_follow_the_table(rows: &Value, kind: &str) {
    let keys = outbound::config::keys(kind).unwrap_or_else(|| panic!("no keys for {kind}"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), keys.len(), "{kind}: {rows:?}");
    for (row, key) in rows.iter().zip(keys) {
        assert_eq!(row["key"], key.name, "{kind}");
        assert_eq!(
            row["env"],
            serde_json::json!(key.env),
            "{kind} {}",
            key.name
        );
        assert_eq!(row["help"], key.help, "{kind} {}", key.name);
        assert_eq!(row["secret"], key.secret, "{kind} {}", key.name);
        match row["origin_type"].as_str().unwrap() {
            "default" => assert_eq!(row["value"], key.default.unwrap(), "{kind} {}", key.name),
            "unset" => assert!(key.default.is_none(), "{kind} {} has a default", key.name),
            _ => {}
        }
    }
}

#[test]
fn config_rows_are_the_settings_table() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "smtp",
            &[("MAIL_TYPE", "smtp"), ("SMTP_SERVER", "smtp.example.com")],
        ),
        ("smtp", &[("MAILER_DSN", "smtps://u:p@smtp.example.com")]),
        (
            "resend",
            &[("MAIL_TYPE", "resend"), ("RESEND_API_KEY", "re_x")],
        ),
        ("sendgrid", &[("MAILER_DSN", "sendgrid://SG.x@default")]),
        (
            "graph",
            &[
                ("MAIL_TYPE", "graph"),
                ("MAIL_DEFAULT_SEND_FROM", "a@example.com"),
            ],
        ),
        ("file", &[("MAIL_TYPE", "file")]),
        ("memory", &[("MAILER_DSN", "memory://")]),
        ("file", &[]), // nothing configured: the ./outbox fallback
    ];
    for (kind, vars) in cases {
        let v = config_json(vars);
        assert_eq!(v["transport"], *kind, "{v}");
        rows_follow_the_table(&v["settings"], kind);
    }
    // A group: its own keys, then each member's.
    let v = config_json(&[(
        "MAILER_DSN",
        "failover(smtp://a.example resend://re_x@default)?retries=1",
    )]);
    rows_follow_the_table(&v["settings"], "failover");
    rows_follow_the_table(&v["members"][0]["settings"], "smtp");
    rows_follow_the_table(&v["members"][1]["settings"], "resend");
}

/// With MAILER_DSN, SMTP_TLS_CA_FILE and SMTP_TIMEOUT are not read: `outbound config` must
/// not call them unset, and `config` and `check` say what to do instead.
#[test]
fn a_set_variable_the_dsn_does_not_read_is_reported_not_shown_unset() {
    let vars = [
        ("MAILER_DSN", "smtp://127.0.0.1:1?tls=none"),
        ("SMTP_TLS_CA_FILE", "/etc/outbound/ca.pem"),
        ("SMTP_TIMEOUT", "5"),
    ];
    let (code, stdout, stderr) = outbound(&vars, &["config"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("unset (SMTP_TLS_CA_FILE)"), "{stdout}");
    let ca_row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ca_file"))
        .unwrap();
    assert!(
        ca_row.contains("MAILER_DSN query `ca_file`")
            && ca_row.contains("SMTP_TLS_CA_FILE is set but not used"),
        "{ca_row}"
    );
    assert!(
        stdout.contains("- SMTP_TLS_CA_FILE is set but MAILER_DSN is used; add `?ca_file=`")
            && stdout.contains("- SMTP_TIMEOUT is set but MAILER_DSN is used; add `?timeout=`"),
        "{stdout}"
    );

    let v = config_json(&vars);
    let problems = v["problems"].to_string();
    assert!(problems.contains("add `?ca_file=`"), "{problems}");
    let ca = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "ca_file")
        .unwrap()
        .clone();
    assert_eq!(ca["origin_type"], "unset");
    assert_eq!(ca["unused_variable"], "SMTP_TLS_CA_FILE");

    // `check` (connection refused here) says so before its own failure.
    let (code, _, stderr) = outbound(&vars, &["check"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("note: SMTP_TLS_CA_FILE is set but MAILER_DSN is used; add `?ca_file=`"),
        "{stderr}"
    );
}
