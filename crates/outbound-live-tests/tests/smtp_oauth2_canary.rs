//! The SMTP transport when its token endpoint fails, and canary values: configured through
//! Dify's variables (`Settings::from_env_source`), a token endpoint that answers 500, answers
//! malformed JSON, or never answers gives a `Transient`, `Transient` or `Timeout` error within
//! the configured timeout (SMTP_TIMEOUT, which also bounds each token request). The client
//! secret and every access token never appear in any error's `Display`/`Debug` (sources
//! included), the transport's or the settings' `Debug`, the notes, nor the logs captured at
//! TRACE level for every crate (this binary installs the only global subscriber, writing to a
//! buffer), while a real XOAUTH2 login to Postfix happens too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbound::config::Settings;
use outbound::{ErrorKind, Message};
use outbound_testkit::oauth::TokenServer;
use outbound_testkit::{unique, Maildir, TestEnv};
use secrecy::ExposeSecret;
use serde_json::json;

const CLIENT_SECRET: &str = "canary-secret-smtp-5b2c";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn settings(env: &TestEnv, server: &TokenServer, timeout: &str) -> Settings {
    let vars: HashMap<String, String> = [
        ("MAIL_TYPE", "smtp".to_string()),
        ("MAIL_DEFAULT_SEND_FROM", env.user()),
        ("SMTP_SERVER", env.host()),
        ("SMTP_PORT", env.port_submission().to_string()),
        ("SMTP_USE_TLS", "true".into()),
        ("SMTP_OPPORTUNISTIC_TLS", "true".into()),
        ("SMTP_TLS_CA_FILE", env.ca_file().display().to_string()),
        ("SMTP_USERNAME", env.user()),
        ("SMTP_AUTH_TYPE", "oauth2".into()),
        // The seeds' other spelling this time.
        ("MICROSOFT_OAUTH2_CLIENT_ID", "outbound-canary".into()),
        ("MICROSOFT_OAUTH2_CLIENT_SECRET", CLIENT_SECRET.into()),
        ("MICROSOFT_OAUTH2_TENANT_ID", "contoso".into()),
        ("MICROSOFT_OAUTH2_AUTHORITY", server.url()),
        ("SMTP_TIMEOUT", timeout.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Settings::from_env_source(&vars).unwrap().unwrap()
}

fn shown_error(e: &outbound::Error) -> String {
    let mut text = format!("{e}\n{e:?}\n");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_failures_have_the_right_kind_in_time_and_nothing_secret_leaks() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only global subscriber");

    let env = TestEnv::load();
    let mut shown: Vec<String> = Vec::new();
    let mut canaries: Vec<String> = vec![CLIENT_SECRET.to_string(), "TRUNCATED-CANARY".into()];

    // A real login first: a token is issued, used for XOAUTH2 and the message delivered.
    let good = TokenServer::start_trusted(3600);
    let s = settings(&env, &good, "20");
    let transport = s.build().unwrap();
    let id = unique("oauth2-canary");
    let msg = Message::builder()
        .to(format!("bob@{}", env.domain()))
        .subject(format!("canary {id}"))
        .text("x")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    transport.send(&msg).await.unwrap();
    Maildir::new(env.maildir()).wait_for(
        &[format!("<{id}@{}>", env.domain())],
        Duration::from_secs(30),
    );
    let cache = s.token_cache().unwrap().unwrap();
    let token = cache.current().unwrap();
    let secret = token.secret().expose_secret().to_string();
    canaries.push(secret.clone());
    canaries.push(secret.rsplit('.').next().unwrap().to_string());
    shown.push(format!(
        "{transport:?} {} {s:?} {:?} {cache:?} {token:?} {}",
        transport.describe(),
        s.notes(),
        token.masked()
    ));

    // Then a token endpoint that fails, three ways. SMTP_TIMEOUT=2 bounds each token request.
    let failing = TokenServer::start(3600);
    let s = settings(&env, &failing, "2");
    let transport = s.build().unwrap();
    shown.push(format!("{transport:?} {s:?}"));
    let timeout = Duration::from_secs(2);
    for (fault, kind) in [
        (json!({"mode": "500"}), ErrorKind::Transient),
        (json!({"mode": "malformed"}), ErrorKind::Transient),
        (json!({"mode": "stall"}), ErrorKind::Timeout),
    ] {
        failing.fault(fault.clone()).await;
        let before = failing.token_requests().await;
        let started = Instant::now();
        let err = transport.send(&msg).await.unwrap_err();
        let took = started.elapsed();
        eprintln!(
            "{}: {:?} after {:.2} s: {err}",
            fault["mode"],
            err.kind(),
            took.as_secs_f64()
        );
        assert_eq!(err.kind(), kind, "{fault}: {err}");
        assert!(
            took < timeout + Duration::from_millis(1500),
            "{fault}: took {took:?}"
        );
        if kind == ErrorKind::Timeout {
            assert!(took >= timeout - Duration::from_millis(100), "{took:?}");
            assert!(err.to_string().contains("within 2 s"), "{err}");
        }
        assert!(
            err.to_string()
                .contains("cannot get an OAuth2 access token for"),
            "{err}"
        );
        assert_eq!(
            failing.token_requests().await,
            before + 1,
            "one request per send, no SMTP connection"
        );
        shown.push(shown_error(&err));
    }
    failing.clear_faults().await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("token acquired") && logs.contains("AUTH XOAUTH2"),
        "the library's TRACE logs were captured:\n{logs}"
    );
    let everything = format!("{}\n{logs}", shown.join("\n"));
    for canary in &canaries {
        assert!(
            !everything.contains(canary.as_str()),
            "a secret leaked ({}…):\n{everything}",
            &canary[..8.min(canary.len())]
        );
    }
    eprintln!(
        "checked {} canaries against {} bytes of output and logs",
        canaries.len(),
        everything.len()
    );
}
