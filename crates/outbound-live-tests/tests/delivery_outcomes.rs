//! One final outcome per send, through the layers and the `outbound` command: delivered once,
//! failed with nothing delivered (and said whether resending is safe), or ambiguous with at
//! most one copy. Each scenario counts the copies on the server's side (the fault server's
//! log, Postfix's Maildir and maillog).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::layer::{Failover, Retry, RetryPolicy};
use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::{ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use outbound_live_tests::outbound_bin;
use outbound_testkit::{unique, FaultServer, Maildir, Maillog, TestEnv};

fn message(env: &TestEnv, tag: &str) -> (Message, String) {
    let id = unique(tag);
    let d = env.domain();
    let msg = Message::builder()
        .from(format!("app@{d}"))
        .to(format!("bob@{d}"))
        .subject(format!("outcome {id}"))
        .text("hello")
        .message_id(format!("{id}@{d}"))
        .build()
        .unwrap();
    (msg, format!("<{id}@{d}>"))
}

fn fault_smtp(server: &FaultServer) -> SmtpTransport {
    SmtpTransport::builder("127.0.0.1")
        .port(server.port)
        .tls(TlsMode::None)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn fast_retries(n: u32) -> RetryPolicy {
    RetryPolicy::new(n).backoff(Duration::from_millis(10), Duration::from_millis(50))
}

/// `outbound` with a clean environment.
fn outbound(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(outbound_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        json,
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test]
async fn lost_after_the_final_dot_is_ambiguous_and_never_retried() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "drop-after-data", &[]);
    let t = Retry::new(fault_smtp(&server), fast_retries(3));
    let (msg, _) = message(&env, "dropdot");
    let err = t.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert_eq!(err.exit_code(), 75);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.count("data-end"),
        1,
        "at most one copy: never resent"
    );
    assert_eq!(server.count("connect"), 1);

    // The command says so: status ambiguous, resending not safe.
    let dsn = format!("smtp://127.0.0.1:{}?tls=none&timeout=1", server.port);
    let (code, json, all) = outbound(&[
        "send",
        "--dsn",
        &dsn,
        "--from",
        "app@example.test",
        "--to",
        "bob@example.test",
        "--text",
        "x",
        "--json",
        "--retries",
        "3",
    ]);
    assert_eq!(code, 75, "{all}");
    assert_eq!(json["status"], "ambiguous", "{all}");
    assert_eq!(json["resend_safe"], false, "{all}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.count("data-end"),
        2,
        "one more copy at most, from the command"
    );
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_and_reported_as_safe_to_resend() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "tempfail-data", &[]);
    let t = Retry::new(fault_smtp(&server), fast_retries(2));
    let (msg, _) = message(&env, "tempfail");
    let err = t.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert_eq!(err.smtp_code(), Some(451));
    assert_eq!(
        server.count("data-end"),
        3,
        "the first attempt and two retries"
    );
    let refusals = server
        .events()
        .iter()
        .filter(|e| {
            e["event"] == "reply" && e["line"].as_str().is_some_and(|l| l.starts_with("451"))
        })
        .count();
    assert_eq!(
        refusals, 3,
        "each copy was refused (451), so none was accepted"
    );

    let dsn = format!("smtp://127.0.0.1:{}?tls=none", server.port);
    let (code, json, all) = outbound(&[
        "send",
        "--dsn",
        &dsn,
        "--from",
        "app@example.test",
        "--to",
        "bob@example.test",
        "--text",
        "x",
        "--json",
        "--retries",
        "1",
    ]);
    assert_eq!(code, 75, "{all}");
    assert_eq!(json["status"], "failed", "{all}");
    assert_eq!(json["resend_safe"], true, "{all}");
    assert_eq!(json["error"]["code"], 451, "{all}");
}

#[tokio::test]
async fn a_stalled_greeting_times_out_on_every_attempt_within_the_deadline() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "stall", &[]);
    let t = Retry::new(
        fault_smtp(&server),
        fast_retries(5).deadline(Duration::from_millis(2500)),
    );
    let (msg, _) = message(&env, "stall");
    let started = Instant::now();
    let err = t.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // 1 s per attempt: the deadline stops it after at most 3 attempts.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let connects = server.count("connect");
    assert!((2..=3).contains(&connects), "{connects} attempts");
}

#[tokio::test]
async fn every_recipient_refused_is_permanent_and_not_retried() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "reject-rcpt", &[]);
    let t = Retry::new(fault_smtp(&server), fast_retries(3));
    let msg = Message::builder()
        .from("app@example.test")
        .to("reject-me@example.test")
        .text("x")
        .build()
        .unwrap();
    let err = t.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert_eq!(err.exit_code(), 69);
    assert_eq!(server.count("connect"), 1, "not retried");
    assert_eq!(server.count("data-end"), 0, "nothing sent");
}

#[tokio::test]
async fn failover_from_a_stalled_server_to_postfix_delivers_one_copy() {
    let env = TestEnv::load();
    let server = FaultServer::start(&TestEnv::load_file(), "stall", &[]);
    let postfix = SmtpTransport::builder(env.host())
        .port(env.port_plain())
        .tls(TlsMode::None)
        .build()
        .unwrap();
    let t = Failover::new(vec![Arc::new(fault_smtp(&server)), Arc::new(postfix)]);
    let (msg, mid) = message(&env, "failover");
    let receipt = t.send(&msg).await.unwrap();
    assert_eq!(receipt.attempts, 2, "{receipt:?}");
    assert_eq!(receipt.message_id, mid);
    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(maildir.files_for(&mid).len(), 1, "exactly one copy");
    assert_eq!(files[&mid].len(), 1);
    assert_eq!(server.count("data-end"), 0);
}

/// RFC 5321 §4.1.1.10: the client ends the session with QUIT. `outbound send` closes its
/// transport before exiting, after a failure too, so Postfix logs `quit=1`. (Sessions are told
/// apart by the queue id of the sent message and by the refused RCPT of the other.)
#[tokio::test]
async fn the_command_says_quit_after_sending_and_after_a_refusal() {
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let dsn = format!("smtp://{}:{}?tls=none", env.host(), env.port_plain());
    let d = env.domain();
    let from = format!("app@{d}");
    let to = format!("bob@{d}");
    let (code, json, all) = outbound(&[
        "send", "--dsn", &dsn, "--from", &from, "--to", &to, "--text", "x", "--json",
    ]);
    assert_eq!(code, 0, "{all}");
    let sent_qid = json["provider_id"].as_str().unwrap().to_string();
    // A refusal: the only recipient is refused at RCPT (550).
    let refused = format!("reject-me@{d}");
    let (code, _, all) = outbound(&[
        "send", "--dsn", &dsn, "--from", &from, "--to", &refused, "--text", "x",
    ]);
    assert_eq!(code, 69, "{all}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = log.sessions();
        let sent = sessions
            .iter()
            .find(|s| s.queue_ids.contains(&sent_qid) && s.disconnect_line.is_some());
        let refusal = sessions
            .iter()
            .find(|s| s.disconnect_line.is_some() && s.disconnect_stats.contains("rcpt=0/1"));
        if let (Some(sent), Some(refusal)) = (sent, refusal) {
            assert!(
                sent.disconnect_stats.contains("quit=1"),
                "{}",
                sent.disconnect_stats
            );
            assert!(
                refusal.disconnect_stats.contains("quit=1"),
                "{}",
                refusal.disconnect_stats
            );
            break;
        }
        assert!(Instant::now() < deadline, "sessions: {sessions:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server that quotes the credentials it was sent in its 535 (base64 and decoded): at the
/// most verbose log level, no form of the password reaches any output of the command.
#[test]
fn credentials_echoed_by_the_server_never_reach_any_output() {
    use base64::Engine as _;
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "echo-auth", &[]);
    let password = "CANARY-pw-9931";
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let forms = [
        password.to_string(),
        b64(password.as_bytes()),
        b64(format!("\0alice\0{password}").as_bytes()),
    ];
    for mechanism in ["PLAIN", "LOGIN"] {
        let dsn = format!(
            "smtp://alice:{password}@127.0.0.1:{}?tls=none&mechanism={mechanism}",
            server.port
        );
        for args in [
            vec![
                "-vvv",
                "send",
                "--dsn",
                &dsn,
                "--from",
                "a@example.test",
                "--to",
                "b@example.test",
                "--text",
                "x",
            ],
            vec!["-vvv", "check", "--dsn", &dsn],
            vec![
                "send",
                "--dsn",
                &dsn,
                "--from",
                "a@example.test",
                "--to",
                "b@example.test",
                "--text",
                "x",
                "--json",
            ],
        ] {
            let (code, _, all) = outbound(&args);
            assert_eq!(code, 77, "{mechanism} {args:?}: {all}");
            for form in &forms {
                assert!(
                    !all.contains(form.as_str()),
                    "{mechanism} {args:?} leaked {form}:\n{all}"
                );
            }
        }
    }
    // The server did echo them: the test would catch a leak.
    let log = server.log_text();
    assert!(
        log.contains("bad credentials") || log.contains("refused"),
        "{log}"
    );
}
