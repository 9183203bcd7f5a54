//! Real SMTP clients that nobody on the project wrote submit to the relay's receiving side,
//! started in this process with a users file and a self-signed certificate; the spool is
//! the test double from `crates/outbound/tests/relay_support`, which checks the envelope and
//! that the client's bytes arrived intact.
//!
//! - swaks (Debian): STARTTLS + AUTH LOGIN with PIPELINING; implicit TLS + AUTH PLAIN; a
//!   wrong password;
//! - msmtp (Debian): STARTTLS + AUTH PLAIN, the message from standard input compared byte
//!   for byte; a sender the user may not use;
//! - Python's `smtplib` as Dify's `libs/smtp.py` uses it: `SMTP` + `ehlo(server)` +
//!   `starttls` + `ehlo(server)` + `login` + `sendmail` of a `MIMEMultipart`, and the plain
//!   variant (`SMTP_USE_TLS=false`);
//! - nodemailer (npm, `testenv/relay-clients`): `requireTLS` + AUTH.
//!
//! Needs `testenv/relay-clients/install.sh` (scripts/test runs it); a missing client fails
//! the test, naming what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../outbound/tests/relay_support/mod.rs"]
mod relay_support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use relay_support::*;
use tokio::process::Command;

const DIFY_PASSWORD: &str = "dify-relay-canary-pw";
const PRINTER_PASSWORD: &str = "printer-relay-canary-pw";

struct Setup {
    relay: Relay,
    _dir: tempfile::TempDir,
    cert: PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[
            ("dify", DIFY_PASSWORD, &[]),
            ("printer", PRINTER_PASSWORD, &["scans@example.com"]),
        ],
    );
    let (cert, key, _) = certificate_for(dir.path(), &["localhost", "127.0.0.1"]);
    let relay = Relay::start(|b| {
        b.users_file(&users)
            .tls_files(&cert, &key)
            .listen_tls("127.0.0.1:0".parse().unwrap())
    })
    .await;
    Setup {
        relay,
        _dir: dir,
        cert,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Panics (never skips) when a client is missing.
fn require(program: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run testenv/relay-clients/install.sh (scripts/test does)"
    );
}

async fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("client starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("client finished within 60 s")
        .expect("client ran")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn swaks_starttls_auth_login_pipelined() {
    require("swaks");
    let s = setup().await;
    let port = s.relay.addr.port().to_string();
    let body = "Hello from swaks.\n.a line that starts with a dot\n..two dots\nend";
    let out = run(
        Command::new("swaks").args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--pipeline",
            "--helo",
            "swaks.client.test",
            "--auth",
            "LOGIN",
            "--auth-user",
            "dify",
            "--auth-password",
            DIFY_PASSWORD,
            "--from",
            "app@example.com",
            "--to",
            "ada@example.net,bob@example.org",
            "--header",
            "Subject: swaks through the relay",
            "--body",
            body,
        ]),
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("250 2.0.0 Ok: queued as T00001"), "{log}");
    let m = &s.relay.spool.wait_for(1).await[0];
    assert_eq!(m.envelope.mail_from, "app@example.com");
    assert_eq!(m.envelope.rcpt_to, ["ada@example.net", "bob@example.org"]);
    assert_eq!(m.envelope.helo, "swaks.client.test");
    assert!(m.envelope.tls);
    assert_eq!(m.envelope.user.as_ref().unwrap().name, "dify");
    let client = String::from_utf8(m.client_bytes().to_vec()).unwrap();
    assert!(
        client.contains("Subject: swaks through the relay\r\n"),
        "{client}"
    );
    assert!(
        client.contains(
            "\r\n\r\nHello from swaks.\r\n.a line that starts with a dot\r\n..two dots\r\nend\r\n"
        ),
        "{client:?}"
    );
    // swaks sends its own Date and Message-Id: the relay adds neither.
    assert!(!m.facts.added_message_id && !m.facts.added_date);
}

#[tokio::test]
async fn swaks_implicit_tls_auth_plain_and_a_wrong_password() {
    require("swaks");
    let s = setup().await;
    let port = s.relay.tls_addr.unwrap().port().to_string();
    let common = [
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "dify",
        "--from",
        "app@example.com",
        "--to",
        "ada@example.net",
    ];
    let out = run(
        Command::new("swaks").args(common).args([
            "--auth-password",
            DIFY_PASSWORD,
            "--header",
            "Subject: implicit TLS",
        ]),
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let m = &s.relay.spool.wait_for(1).await[0];
    assert!(m.envelope.tls);
    assert!(m.text().contains("with ESMTPSA id"));

    let out = run(
        Command::new("swaks")
            .args(common)
            .args(["--auth-password", "not the password"]),
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("535 5.7.8 Authentication credentials invalid"),
        "{}",
        text(&out)
    );
    assert_eq!(s.relay.spool.count(), 1);
}

fn msmtp_config(dir: &Path, port: u16, cert: &Path, from: &str) -> PathBuf {
    let path = dir.join(format!("msmtprc-{from}"));
    std::fs::write(
        &path,
        format!(
            "account relay\nhost 127.0.0.1\nport {port}\ntls on\ntls_starttls on\n\
             tls_trust_file {}\nauth plain\nuser printer\npassword {PRINTER_PASSWORD}\n\
             from {from}\ndomain msmtp.client.test\naccount default : relay\n",
            cert.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

#[tokio::test]
async fn msmtp_starttls_auth_plain_bytes_intact() {
    require("msmtp");
    let s = setup().await;
    let config = msmtp_config(
        s._dir.path(),
        s.relay.addr.port(),
        &s.cert,
        "scans@example.com",
    );
    // What a scanner or a cron job pipes into msmtp (LF line endings, as files have them).
    let message = "From: Scanner <scans@example.com>\nTo: ada@example.net\n\
                   Subject: scan 42\nDate: Tue, 2 Jan 2024 10:00:00 +0100\n\
                   Message-ID: <scan42@scanner.example.com>\nMIME-Version: 1.0\n\
                   Content-Type: text/plain; charset=utf-8\n\n\
                   Page 1 of 1.\n.\n..\n.hidden\nÜmlaut in the body, 8bit.\n";
    let out = run(
        Command::new("msmtp")
            .arg("-C")
            .arg(&config)
            .arg("ada@example.net"),
        Some(message.as_bytes()),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let m = &s.relay.spool.wait_for(1).await[0];
    assert_eq!(m.envelope.mail_from, "scans@example.com");
    assert_eq!(m.envelope.rcpt_to, ["ada@example.net"]);
    assert_eq!(m.envelope.helo, "msmtp.client.test");
    assert!(m.envelope.tls);
    assert_eq!(m.client_bytes(), message.replace('\n', "\r\n").as_bytes());
    assert_eq!(m.facts.message_id, "<scan42@scanner.example.com>");
}

#[tokio::test]
async fn msmtp_is_refused_a_sender_the_user_may_not_use() {
    require("msmtp");
    let s = setup().await;
    let config = msmtp_config(
        s._dir.path(),
        s.relay.addr.port(),
        &s.cert,
        "ceo@example.com",
    );
    let out = run(
        Command::new("msmtp")
            .arg("-C")
            .arg(&config)
            .arg("ada@example.net"),
        Some(b"From: ceo@example.com\nSubject: forged\n\nx\n"),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("553 5.7.1"), "{}", text(&out));
    assert_eq!(s.relay.spool.count(), 0);
}

/// Dify's `libs/smtp.py` `SMTPClient.send`, as shipped (password SMTP only).
const DIFY_SMTP: &str = r#"
import json, smtplib, sys
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

opts = json.loads(sys.argv[1])
server, port = opts["server"], opts["port"]
use_tls, opportunistic_tls = opts["use_tls"], opts["opportunistic_tls"]
smtp = None
try:
    if use_tls:
        if opportunistic_tls:
            smtp = smtplib.SMTP(server, port, timeout=10)
            smtp.ehlo(server)
            smtp.starttls()
            smtp.ehlo(server)
        else:
            smtp = smtplib.SMTP_SSL(server, port, timeout=10)
    else:
        smtp = smtplib.SMTP(server, port, timeout=10)
    if opts["username"] and opts["password"] and opts["username"].strip() and opts["password"].strip():
        smtp.login(opts["username"], opts["password"])
    msg = MIMEMultipart()
    msg["Subject"] = opts["subject"]
    msg["From"] = opts["from"]
    msg["To"] = opts["to"]
    msg.attach(MIMEText(opts["html"], "html"))
    smtp.sendmail(opts["from"], opts["to"], msg.as_string())
    sys.stdout.write(msg.as_string())
finally:
    if smtp:
        smtp.quit()
"#;

async fn dify_send(port: u16, use_tls: bool, opportunistic: bool, subject: &str) -> Output {
    require("python3");
    let opts = serde_json::json!({
        "server": "127.0.0.1", "port": port, "use_tls": use_tls, "opportunistic_tls": opportunistic,
        "username": "dify", "password": DIFY_PASSWORD, "from": "dify@example.com",
        "to": "ada@example.net", "subject": subject,
        "html": "<p>Hello from Dify.</p>\n<p>.dotted line</p>",
    });
    run(
        Command::new("python3")
            .arg("-c")
            .arg(DIFY_SMTP)
            .arg(opts.to_string()),
        None,
    )
    .await
}

fn check_dify_message(m: &Stored, out: &Output, subject: &str, tls: bool) {
    assert_eq!(m.envelope.mail_from, "dify@example.com");
    assert_eq!(m.envelope.rcpt_to, ["ada@example.net"]);
    assert_eq!(m.envelope.user.as_ref().unwrap().name, "dify");
    assert_eq!(m.envelope.tls, tls);
    // MIMEMultipart has no Message-ID or Date: the relay adds both (RFC 6409 section 8).
    assert!(m.facts.added_message_id && m.facts.added_date);
    // What Python wrote out is what smtplib sent (LF made CRLF; its dot-stuffing undone).
    let sent = String::from_utf8_lossy(&out.stdout).replace('\n', "\r\n");
    assert_eq!(String::from_utf8_lossy(m.client_bytes()), sent);
    assert!(sent.contains(&format!("Subject: {subject}\r\n")));
}

#[tokio::test]
async fn python_smtplib_as_dify_uses_it_with_starttls() {
    let s = setup().await;
    let out = dify_send(s.relay.addr.port(), true, true, "Dify STARTTLS").await;
    assert!(out.status.success(), "{}", text(&out));
    let m = &s.relay.spool.wait_for(1).await[0];
    // Dify says EHLO with the server's address, without the brackets RFC 5321 wants.
    assert_eq!(m.envelope.helo, "127.0.0.1");
    check_dify_message(m, &out, "Dify STARTTLS", true);
}

#[tokio::test]
async fn python_smtplib_as_dify_uses_it_plain_on_loopback() {
    // The README's setup: SMTP_SERVER=127.0.0.1, SMTP_PORT=2525, SMTP_USE_TLS=false.
    let s = setup().await;
    let out = dify_send(s.relay.addr.port(), false, false, "Dify plain").await;
    assert!(out.status.success(), "{}", text(&out));
    check_dify_message(
        &s.relay.spool.wait_for(1).await[0],
        &out,
        "Dify plain",
        false,
    );
}

#[tokio::test]
async fn python_smtplib_as_dify_uses_it_with_implicit_tls() {
    let s = setup().await;
    let out = dify_send(s.relay.tls_addr.unwrap().port(), true, false, "Dify SSL").await;
    assert!(out.status.success(), "{}", text(&out));
    check_dify_message(&s.relay.spool.wait_for(1).await[0], &out, "Dify SSL", true);
}

#[tokio::test]
async fn nodemailer_require_tls_and_auth() {
    require("node");
    let script = repo_root().join("testenv/relay-clients/send-nodemailer.mjs");
    assert!(
        repo_root()
            .join("testenv/relay-clients/node_modules/nodemailer")
            .is_dir(),
        "nodemailer is not installed: run testenv/relay-clients/install.sh (scripts/test does)"
    );
    let s = setup().await;
    let ca = std::fs::read_to_string(&s.cert).unwrap();
    let cases = [
        (s.relay.addr.port(), false, "PLAIN"),
        (s.relay.tls_addr.unwrap().port(), true, "LOGIN"),
    ];
    for (n, (port, secure, method)) in cases.into_iter().enumerate() {
        let opts = serde_json::json!({
            "host": "127.0.0.1", "port": port, "secure": secure, "requireTLS": !secure,
            "authMethod": method,
            "user": "dify", "pass": DIFY_PASSWORD, "ca": ca,
            "from": "Dify <dify@example.com>", "to": ["ada@example.net", "bob@example.org"],
            "subject": format!("nodemailer {n}"), "text": "Hello from nodemailer.\n.dot\nÜ",
            "messageId": format!("<nodemailer-{n}@client.test>"),
        });
        let out = run(
            Command::new("node").arg(&script).arg(opts.to_string()),
            None,
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            info["response"]
                .as_str()
                .unwrap()
                .starts_with("250 2.0.0 Ok: queued as"),
            "{info}"
        );
        let stored = s.relay.spool.wait_for(n + 1).await;
        let m = &stored[n];
        assert_eq!(m.envelope.mail_from, "dify@example.com");
        assert_eq!(m.envelope.rcpt_to, ["ada@example.net", "bob@example.org"]);
        assert_eq!(m.envelope.helo, "nodemailer.client.test");
        assert!(m.envelope.tls);
        assert_eq!(m.facts.message_id, format!("<nodemailer-{n}@client.test>"));
        let client = String::from_utf8(m.client_bytes().to_vec()).unwrap();
        assert!(
            client.contains(&format!("Subject: nodemailer {n}\r\n")),
            "{client}"
        );
        assert!(
            client.contains("Hello from nodemailer.\r\n.dot\r\n"),
            "{client}"
        );
    }
}
