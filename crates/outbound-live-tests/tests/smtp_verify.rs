//! `verify()` against the real Postfix: connect, TLS, EHLO, AUTH, QUIT — and nothing else.
//! Also: no log line, even at TRACE with the wire log on, carries a credential.
//!
//! Nothing in this binary sends mail, so the Maildir must not change while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use outbound::smtp::{Credentials, Mechanism, SmtpTransport, TlsMode};
use outbound::Transport;
use outbound_testkit::{Maildir, Maillog, TestEnv};

fn transport(env: &TestEnv, port: u16, mode: TlsMode, mech: Mechanism) -> SmtpTransport {
    SmtpTransport::builder(env.host())
        .port(port)
        .tls(mode)
        .ca_file(env.ca_file())
        .credentials(Credentials::password(env.user(), env.password()))
        .mechanism(mech)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn verify_authenticates_and_sends_nothing() {
    capture_logs();
    let env = TestEnv::load();
    let maildir = Maildir::new(env.maildir());
    let before = maildir.count_files();
    let log = Maillog::start(env.maillog());
    for (port, mode, commands) in [
        // EHLO, STARTTLS, EHLO, AUTH, QUIT
        (env.port_submission(), TlsMode::StartTls, 5),
        // EHLO, AUTH, QUIT
        (env.port_smtps(), TlsMode::Implicit, 3),
        (env.port_plain(), TlsMode::None, 3),
    ] {
        let t = transport(&env, port, mode, Mechanism::Plain);
        t.verify()
            .await
            .unwrap_or_else(|e| panic!("verify on {port}: {e}"));
        let stats = t.stats();
        assert_eq!(stats.transactions, 0);
        assert_eq!(stats.commands, commands, "{port}: {stats}");
        assert_eq!(stats.open_connections, 0, "verify closes its connection");
    }
    // Postfix's view: three sessions that authenticated and quit without MAIL.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let verified: Vec<_> = log
            .sessions()
            .into_iter()
            .filter(|s| {
                s.disconnect_stats.contains("auth=1")
                    && s.disconnect_stats.contains("quit=1")
                    && !s.disconnect_stats.contains("mail=")
            })
            .collect();
        if verified.len() >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected 3 auth-only sessions in the maillog, found {verified:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        maildir.count_files(),
        before,
        "verify() delivered something"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

/// Every log event of this test binary, at TRACE, with the wire log on. Installed once as the
/// global subscriber before any test talks to a server (a thread-local one can miss events
/// whose callsites another test thread registered first).
fn capture_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            captured
        })
        .clone()
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_the_logs_even_at_trace() {
    let captured = capture_logs();
    let env = TestEnv::load();

    for mech in [Mechanism::Plain, Mechanism::Login] {
        transport(&env, env.port_submission(), TlsMode::StartTls, mech)
            .verify()
            .await
            .unwrap();
    }
    let bad = SmtpTransport::builder(env.host())
        .port(env.port_smtps())
        .tls(TlsMode::Implicit)
        .ca_file(env.ca_file())
        .credentials(Credentials::password(env.user(), "wrong-canary-pw-99"))
        .build()
        .unwrap();
    let err = bad.verify().await.unwrap_err();
    tracing::error!(error = %err, debug = ?err, "reported by the application");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The wire log is on: commands are there, payloads are not.
    assert!(logs.contains("AUTH PLAIN <redacted>"), "{logs}");
    assert!(logs.contains("AUTH LOGIN"), "{logs}");
    assert!(logs.contains("<redacted SASL response>"), "{logs}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        env.password(),
        "wrong-canary-pw-99".to_string(),
        b64(&format!("\0{}\0{}", env.user(), env.password())),
        b64(&env.password()),
        b64(&format!("\0{}\0wrong-canary-pw-99", env.user())),
    ] {
        assert!(!logs.contains(&secret), "{secret:?} appears in the logs");
    }
}
