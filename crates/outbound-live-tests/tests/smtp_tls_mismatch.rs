#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A TLS mode that does not match the port, against real servers (issue 19): nodemailer's
//! `smtp-server` (npm; `testenv/smtp-server/server.js`, installed by
//! `testenv/smtp-server/install.sh`, which `scripts/test` runs) on free ports, and Postfix's
//! 465 and 587 (`testenv/smtp-servers.sh start`) reached through a proxy on a free port, so
//! the port number gives nothing away.
//!
//! STARTTLS (or plain text) pointed at a port that speaks implicit TLS is a configuration error
//! (exit 78) within seconds, not a retryable timeout after the whole greeting timeout (exit
//! 75). Implicit TLS pointed at a STARTTLS port is a TLS error (exit 69) that says the port
//! likely speaks STARTTLS, quoting its greeting. (Postfix's own 465 and 587, by their port
//! numbers, are in `smtp_postfix.rs`, `wrong_tls_mode_for_the_port_is_explained`.)
//!
//! Without Node.js or the npm package these tests panic with the command that installs them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::ErrorKind;
use outbound::Transport;
use outbound_cli::Sysexits;
use outbound_testkit::proxy::Proxy;
use outbound_testkit::TestEnv;

const INSTALL_HINT: &str = "install it with `testenv/smtp-server/install.sh` (needs Node.js and \
     npm), or run `scripts/test`, which does";

/// A private nodemailer smtp-server, stopped when dropped.
struct NodeSmtpServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl NodeSmtpServer {
    /// Implicit TLS (`secure`) or plain text with STARTTLS, with the test environment's
    /// certificate for `localhost`.
    fn start(env: &TestEnv, secure: bool) -> NodeSmtpServer {
        let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../../testenv/smtp-server"]
            .iter()
            .collect();
        assert!(
            dir.join("node_modules/smtp-server/package.json").exists(),
            "nodemailer's smtp-server is not installed in {}: {INSTALL_HINT}",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.js"))
            .arg("--cert")
            .arg(env.get("OUTBOUND_TEST_TLS_CERT"))
            .arg("--key")
            .arg(env.get("OUTBOUND_TEST_TLS_KEY"));
        if secure {
            cmd.arg("--secure");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}; {INSTALL_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let Ok(Some(port)) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("nodemailer's smtp-server did not start (no READY line); {INSTALL_HINT}");
        };
        NodeSmtpServer {
            child,
            _stdin: stdin,
            port,
        }
    }
}

impl Drop for NodeSmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn transport(env: &TestEnv, port: u16, mode: TlsMode) -> SmtpTransport {
    SmtpTransport::builder("localhost")
        .port(port)
        .tls(mode)
        .ca_file(env.ca_file())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Verifies with `mode` at `port`; the error and how long it took.
async fn mismatch(env: &TestEnv, port: u16, mode: TlsMode) -> (outbound::Error, Duration) {
    let t = transport(env, port, mode);
    let started = Instant::now();
    let err = t.verify().await.unwrap_err();
    (err, started.elapsed())
}

fn assert_implicit_tls_port(err: &outbound::Error, took: Duration, what: &str) {
    assert_eq!(err.kind(), ErrorKind::Config, "{what}: {err}");
    assert_eq!(err.exit_code(), 78, "{what}");
    let text = err.to_string();
    assert!(
        text.contains("likely speaks implicit TLS"),
        "{what}: {text}"
    );
    assert!(text.contains("`tls=implicit`"), "{what}: {text}");
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
}

fn assert_starttls_port(err: &outbound::Error, took: Duration, greeting: &str, what: &str) {
    assert_eq!(err.kind(), ErrorKind::Tls, "{what}: {err}");
    assert_eq!(err.exit_code(), 69, "{what}");
    let text = err.to_string();
    assert!(text.contains("likely speaks STARTTLS"), "{what}: {text}");
    assert!(text.contains(greeting), "{what}: {text}");
    assert!(text.contains("`tls=starttls`"), "{what}: {text}");
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
}

#[tokio::test]
async fn nodemailer_implicit_tls_port_with_starttls_or_plain_text_is_a_configuration_error() {
    let env = TestEnv::load();
    let server = NodeSmtpServer::start(&env, true);
    // The right mode works: the server is up and speaks implicit TLS.
    transport(&env, server.port, TlsMode::Implicit)
        .verify()
        .await
        .unwrap();
    for mode in [TlsMode::StartTls, TlsMode::Opportunistic, TlsMode::None] {
        let (err, took) = mismatch(&env, server.port, mode).await;
        assert_implicit_tls_port(&err, took, &format!("nodemailer, {mode}"));
    }
}

#[tokio::test]
async fn nodemailer_starttls_port_with_implicit_tls_says_it_likely_speaks_starttls() {
    let env = TestEnv::load();
    let server = NodeSmtpServer::start(&env, false);
    transport(&env, server.port, TlsMode::StartTls)
        .verify()
        .await
        .unwrap();
    let (err, took) = mismatch(&env, server.port, TlsMode::Implicit).await;
    assert_starttls_port(&err, took, "220 starttls.smtp-server.test", "nodemailer");
}

/// `outbound check` with a DSN, as an operator runs it: exit 78, fast, with the fix.
#[tokio::test]
async fn outbound_check_against_nodemailer_implicit_tls_exits_78() {
    let env = TestEnv::load();
    let server = NodeSmtpServer::start(&env, true);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = assert_cmd::Command::new(outbound_live_tests::outbound_bin())
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "MAILER_DSN",
            format!(
                "smtp://localhost:{}?timeout=30&ca_file={}",
                server.port,
                env.ca_file().display()
            ),
        )
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("likely speaks implicit TLS"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
}

/// Postfix's 465 (`smtpd_tls_wrappermode`) and 587 through a proxy on a free port.
#[tokio::test]
async fn postfix_behind_another_port_number() {
    let env = TestEnv::load();
    let smtps = Proxy::start(format!("{}:{}", env.host(), env.port_smtps())).await;
    for mode in [TlsMode::StartTls, TlsMode::None] {
        let (err, took) = mismatch(&env, smtps.port, mode).await;
        assert_implicit_tls_port(&err, took, &format!("postfix 465, {mode}"));
    }
    let submission = Proxy::start(format!("{}:{}", env.host(), env.port_submission())).await;
    let (err, took) = mismatch(&env, submission.port, TlsMode::Implicit).await;
    assert_starttls_port(&err, took, "ESMTP Postfix", "postfix 587");
}
