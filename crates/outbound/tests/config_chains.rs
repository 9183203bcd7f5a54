#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Configuration of layered transports: `failover(…)` and `roundrobin(…)` DSNs, retries and
//! rates from a DSN query, MAIL_RETRIES, MAIL_RATE and MAIL_FAILOVER_COOLDOWN.

use std::collections::HashMap;
use std::sync::Arc;

use outbound::config::{Group, Settings};
use outbound::{ErrorKind, Message, Transport};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn msg() -> Message {
    Message::builder()
        .from("app@example.com")
        .to("ada@example.com")
        .subject("chain")
        .text("hi")
        .build()
        .unwrap()
}

#[test]
fn failover_and_roundrobin_dsns_nest_and_take_their_own_query() {
    let s = Settings::from_dsn(
        "failover(smtp://a.example roundrobin(smtp://b.example?rate=5/s memory://) )?retries=2&cooldown=15",
    )
    .unwrap();
    assert_eq!(s.group(), Some(Group::Failover));
    assert_eq!(s.kind(), "failover");
    assert_eq!(s.get("retries").unwrap().value.expose(), "2");
    assert_eq!(
        s.get("cooldown").unwrap().origin.to_string(),
        "MAILER_DSN query `cooldown`"
    );
    let inner = &s.members()[1];
    assert_eq!(inner.group(), Some(Group::RoundRobin));
    assert_eq!(
        inner.members()[0].get("rate").unwrap().value.expose(),
        "5/s"
    );
    assert_eq!(
        inner.members()[0].get("server").unwrap().origin.to_string(),
        "MAILER_DSN member 2 member 1 host"
    );
    let t = s.build().unwrap();
    assert_eq!(t.kind(), "failover");
    let d = t.describe();
    assert!(d.starts_with("failover(smtp://a.example:587"), "{d}");
    assert!(d.contains("roundrobin("), "{d}");
    assert!(d.contains("(rate 5/s)"), "{d}");
    assert!(d.ends_with("(retries 2)"), "{d}");
}

#[test]
fn malformed_chains_are_config_errors_that_say_what_is_valid() {
    for (dsn, says) in [
        (
            "failover(smtp://a.example smtp://b.example",
            "no closing `)`",
        ),
        ("failover(smtp://a.example)", "at least two transports"),
        (
            "roundrobin(smtp://a.example memory://)?tries=3",
            "`tries` is not known",
        ),
        (
            "failover(smtp://a.example memory://) junk",
            "only a query may follow",
        ),
        ("failover(smtp://a.example gopher://x)", "scheme `gopher`"),
        ("failover(memory:// memory://)?rate=fast", "30/min"),
        ("failover(memory:// memory://)?retries=-1", "`retries`"),
    ] {
        let err = Settings::from_dsn(dsn)
            .and_then(|s| s.build().map(|_| ()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{dsn}: {err}");
        assert!(
            err.to_string().contains(says),
            "{dsn}: {err} should say {says}"
        );
    }
}

#[tokio::test]
async fn mail_retries_and_mail_rate_apply_to_env_and_dsn_configurations() {
    let s = Settings::from_env_source(&env(&[
        ("MAIL_TYPE", "memory"),
        ("MAIL_RETRIES", "4"),
        ("MAIL_RATE", "30/min,burst=5"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(s.get("retries").unwrap().origin.to_string(), "MAIL_RETRIES");
    let t = s.build().unwrap();
    assert_eq!(t.describe(), "memory (rate 30/min,burst=5) (retries 4)");
    t.send(&msg()).await.unwrap();

    // A DSN is completed from the variables; its own query wins.
    let s = Settings::from_dsn_with_env(
        "memory://?retries=1",
        "MAILER_DSN",
        &env(&[("MAIL_RETRIES", "4"), ("MAIL_RATE", "10/s")]),
    )
    .unwrap();
    assert_eq!(s.get("retries").unwrap().value.expose(), "1");
    assert_eq!(s.get("rate").unwrap().origin.to_string(), "MAIL_RATE");

    // In a group they apply to the group, and the default sender to each member.
    let s = Settings::from_dsn_with_env(
        "failover(memory:// file:///tmp/outbound-chain-test)",
        "MAILER_DSN",
        &env(&[
            ("MAIL_RETRIES", "2"),
            ("MAIL_FAILOVER_COOLDOWN", "5"),
            ("MAIL_DEFAULT_SEND_FROM", "app@example.com"),
        ]),
    )
    .unwrap();
    assert_eq!(s.get("retries").unwrap().value.expose(), "2");
    assert_eq!(s.get("cooldown").unwrap().value.expose(), "5");
    assert!(s.members().iter().all(|m| m.get("retries").is_none()));
    assert!(s
        .members()
        .iter()
        .all(|m| m.get("default_from").unwrap().value.expose() == "app@example.com"));
}

#[tokio::test]
async fn a_configured_chain_fails_over_and_prepares_through_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!(
        "failover(smtp://127.0.0.1:1?tls=none&from=primary@example.com file://{}?from=other@example.org)",
        dir.path().display()
    );
    let t = Settings::from_dsn(&dsn).unwrap().build().unwrap();
    let no_from = Message::builder()
        .to("ada@example.com")
        .text("hi")
        .build()
        .unwrap();
    let receipt = t.send(&no_from).await.unwrap();
    assert_eq!(receipt.transport, "file");
    assert_eq!(receipt.attempts, 2);
    // Prepared by the primary: its default sender and Message-ID domain, wherever it went.
    assert!(receipt.message_id.ends_with("@example.com>"), "{receipt:?}");
    let eml = std::fs::read_to_string(receipt.provider_id.unwrap()).unwrap();
    assert!(eml.contains("From: <primary@example.com>"), "{eml}");
}

/// RateLimit holds 10/s over 50 messages: the 50th goes out 4.9 s after the first (no burst),
/// measured with a 10% tolerance.
#[tokio::test]
async fn rate_limit_holds_ten_per_second_over_fifty_messages() {
    use outbound::dev::MemoryTransport;
    use outbound::layer::RateLimit;
    let memory = MemoryTransport::new();
    let t = Arc::new(RateLimit::new(
        memory.clone(),
        Some("10/s".parse().unwrap()),
        None,
    ));
    let started = std::time::Instant::now();
    // Eight concurrent senders share the limit (clones share one limiter).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, next) = (t.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 50 {
                t.send(&msg()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = memory.len();
    assert_eq!(sent, 50);
    let expected = (sent - 1) as f64 / 10.0;
    assert!(
        (elapsed - expected).abs() <= expected * 0.1,
        "{sent} messages in {elapsed:.2} s; expected {expected:.2} s"
    );
}

/// A failover from SMTP to an HTTP provider sends the message the primary prepared: the same
/// Message-ID (with the primary's sender domain) in the receipt and the same idempotency key
/// on every attempt.
#[tokio::test]
async fn failover_from_smtp_to_resend_keeps_the_message_id() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id":"em_9"}"#))
        .mount(&server)
        .await;
    let dsn = format!(
        "failover(smtp://127.0.0.1:1?tls=none&from=primary@first.example resend://re_key@default?api_url={}&from=other@second.example)",
        server.uri()
    );
    let t = Settings::from_dsn(&dsn).unwrap().build().unwrap();
    let no_from = Message::builder()
        .to("ada@example.com")
        .subject("s")
        .text("hi")
        .build()
        .unwrap();
    let prepared = t.prepare(&no_from).unwrap();
    let r1 = t.send_prepared(&prepared).await.unwrap();
    let r2 = t.send_prepared(&prepared).await.unwrap();
    assert_eq!(r1.transport, "resend");
    assert_eq!(r1.message_id, prepared.message_id());
    assert!(r1.message_id.ends_with("@first.example>"), "{r1:?}");
    assert_eq!(r2.message_id, r1.message_id);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let key = |i: usize| {
        requests[i].headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(key(0), key(1));
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body["from"], "primary@first.example",
        "the primary's sender: {body}"
    );
}
