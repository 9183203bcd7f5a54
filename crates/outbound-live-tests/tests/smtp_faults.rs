//! Failures Postfix will not produce on demand, from `testenv/fault_smtpd.py` (aiosmtpd),
//! spawned per test on a free port. Its JSON-lines log records every command line the client
//! sent, each final "." (`data-end`) and each connection, so the tests see what went over the
//! wire from the server's side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use outbound::smtp::{Credentials, Mechanism, SmtpTransport, TlsMode};
use outbound::{ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use outbound_testkit::{FaultServer, TestEnv};

fn message() -> Message {
    Message::builder()
        .from("app@example.test")
        .to("bob@example.test")
        .subject("fault")
        .text("hello")
        .build()
        .unwrap()
}

fn plain(server: &FaultServer) -> outbound::smtp::SmtpTransportBuilder {
    SmtpTransport::builder("127.0.0.1")
        .port(server.port)
        .tls(TlsMode::None)
}

#[tokio::test]
async fn required_starttls_missing_is_a_tls_error_and_no_credential_is_sent() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "no-starttls", &[]);
    let t = plain(&server)
        .tls(TlsMode::StartTls)
        .credentials(Credentials::password("alice@example.test", "canary-pw-77"))
        .build()
        .unwrap();
    let err = t.send(&message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert_eq!(err.exit_code(), 69);
    let err = t.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    let commands = server.commands();
    assert!(
        commands.iter().any(|c| c.starts_with("EHLO")),
        "the client did talk to the server: {commands:?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("AUTH")),
        "no AUTH may be sent without TLS: {commands:?}"
    );
    assert!(!server.log_text().contains("canary-pw-77"));
    assert!(
        !commands.iter().any(|c| c.starts_with("MAIL")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn opportunistic_tls_continues_in_plain_text_without_starttls() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "no-starttls", &[]);
    let t = plain(&server).tls(TlsMode::Opportunistic).build().unwrap();
    t.send(&message()).await.unwrap();
    assert_eq!(server.count("message"), 1);
}

#[tokio::test]
async fn starttls_works_with_a_ca_file_against_another_server() {
    let env = TestEnv::load_file();
    let cert = env.get("OUTBOUND_TEST_TLS_CERT");
    let key = env.get("OUTBOUND_TEST_TLS_KEY");
    let server = FaultServer::start(&env, "accept", &["--tls-cert", &cert, "--tls-key", &key]);
    let t = plain(&server)
        .tls(TlsMode::StartTls)
        .ca_file(env.ca_file())
        .credentials(Credentials::password("alice@example.test", "pw"))
        .build()
        .unwrap();
    t.send(&message()).await.unwrap();
    let commands = server.commands();
    let starttls = commands.iter().position(|c| c == "STARTTLS").unwrap();
    let auth = commands.iter().position(|c| c.starts_with("AUTH")).unwrap();
    assert!(starttls < auth, "AUTH only after STARTTLS: {commands:?}");
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout_within_the_configured_time() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "stall", &[]);
    let limit = Duration::from_secs(1);
    let t = plain(&server).timeout(limit).build().unwrap();
    let started = Instant::now();
    let err = t.send(&message()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("greeting"), "{err}");
    assert!(elapsed >= limit, "{elapsed:?}");
    assert!(
        elapsed < limit + Duration::from_millis(700),
        "took {elapsed:?}"
    );
}

async fn ambiguous_after_data(mode: &str) {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, mode, &[]);
    let t = plain(&server)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = t.send(&message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{mode}: {err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("may have been delivered"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Give the server a moment to log anything a (wrong) retry would have caused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.count("data-end"),
        1,
        "{mode}: exactly one DATA, never retried"
    );
    assert_eq!(server.count("connect"), 1, "{mode}: no second connection");
    let data_commands = server.commands().iter().filter(|c| *c == "DATA").count();
    assert_eq!(data_commands, 1);
    let stats = t.stats();
    assert_eq!(stats.transactions, 0);
    assert_eq!(
        stats.open_connections, 0,
        "the broken connection was discarded"
    );
}

#[tokio::test]
async fn stall_after_data_is_ambiguous_and_not_retried() {
    ambiguous_after_data("stall-after-data").await;
}

#[tokio::test]
async fn drop_after_data_is_ambiguous_and_not_retried() {
    ambiguous_after_data("drop-after-data").await;
}

#[tokio::test]
async fn tempfail_at_end_of_data_is_transient_and_the_connection_is_reused() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "tempfail-data", &[]);
    let t = plain(&server).build().unwrap();
    for _ in 0..2 {
        let err = t.send(&message()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert_eq!(err.smtp_code(), Some(451));
    }
    assert_eq!(server.count("connect"), 1, "the session stayed usable");
    assert!(
        !server.commands().iter().any(|c| c == "RSET"),
        "a completed (refused) transaction needs no RSET"
    );
}

#[tokio::test]
async fn password_rejected_with_535() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "auth-fail", &[]);
    for mech in [Mechanism::Plain, Mechanism::Login] {
        let t = plain(&server)
            .credentials(Credentials::password("alice@example.test", "pw"))
            .mechanism(mech)
            .build()
            .unwrap();
        let err = t.verify().await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Auth,
            "{mech}: {err}\n{}",
            server.log_text()
        );
        assert_eq!(err.smtp_code(), Some(535));
    }
}

/// RFC 4954 / RFC 7628 failure shape: a 334 carrying base64 JSON, answered by the client with
/// an empty line (XOAUTH2) or a single ^A (OAUTHBEARER), then the final 535.
#[tokio::test]
async fn oauth2_json_error_challenge_is_answered_and_reported() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "auth-fail", &[]);
    for (mech, answer) in [(Mechanism::XOAuth2, ""), (Mechanism::OAuthBearer, "AQ==")] {
        let t = plain(&server)
            .credentials(Credentials::oauth2_static(
                "alice@example.test",
                "canary-token-5150",
            ))
            .mechanism(mech)
            .build()
            .unwrap();
        let err = t.verify().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{mech}: {err}");
        assert_eq!(err.smtp_code(), Some(535), "{err}");
        let text = err.server_text().unwrap();
        assert!(text.contains(r#""status":"401""#), "{text}");
        assert!(!format!("{err} {err:?}").contains("canary-token-5150"));
        let commands = server.commands();
        let auth = commands
            .iter()
            .rposition(|c| c.starts_with(&format!("AUTH {mech}")))
            .unwrap();
        assert_eq!(
            commands.get(auth + 1).map(String::as_str),
            Some(answer),
            "{mech}: the answer to the error challenge: {commands:?}"
        );
    }
}

/// What the server received in MAIL FROM: SIZE always (it advertises SIZE), BODY=8BITMIME only
/// for a message with 8-bit bytes, SMTPUTF8 only for a non-ASCII address; and the exact bytes.
#[tokio::test]
async fn mail_parameters_follow_the_message() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "accept", &[]);
    let t = plain(&server).build().unwrap();
    let ascii = message();
    let eight_bit = Message::builder()
        .raw(
            "From: app@example.test\r\nTo: bob@example.test\r\nSubject: x\r\n\r\nGrüße\r\n"
                .as_bytes(),
        )
        .to("bob@example.test")
        .build()
        .unwrap();
    let utf8_rcpt = Message::builder()
        .from("app@example.test")
        .to("jörg@example.test")
        .text("hi")
        .build()
        .unwrap();
    for m in [&ascii, &eight_bit, &utf8_rcpt] {
        t.send(m).await.unwrap();
    }
    let messages: Vec<_> = server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .collect();
    assert_eq!(messages.len(), 3);
    let options = |i: usize| -> Vec<String> {
        messages[i]["mail_options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_ascii_uppercase())
            .collect()
    };
    assert!(
        options(0).iter().any(|o| o.starts_with("SIZE=")),
        "{:?}",
        options(0)
    );
    assert!(!options(0).contains(&"BODY=8BITMIME".to_string()));
    assert!(
        options(1).contains(&"BODY=8BITMIME".to_string()),
        "{:?}",
        options(1)
    );
    assert!(
        options(2).contains(&"SMTPUTF8".to_string()),
        "{:?}",
        options(2)
    );
    assert_eq!(messages[2]["rcpt_tos"][0], "jörg@example.test");
    // The server got exactly the rendered bytes (aiosmtpd undoes the dot-stuffing).
    use base64::Engine as _;
    let got = base64::engine::general_purpose::STANDARD
        .decode(messages[1]["data_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, eight_bit.render(None).unwrap());
    // One connection, three transactions, no RSET.
    assert_eq!(server.count("connect"), 1);
    assert!(!server.commands().iter().any(|c| c == "RSET"));
}
