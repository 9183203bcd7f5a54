//! The OAuth2 token lifecycle of the SMTP transport, end to end, through the real
//! configuration path (Dify's variables via `Settings::from_env_source`, or the seeds' map keys
//! via `create_transport`): client credentials from a real token server
//! (`testenv/oauth/token-server.js`, npm oauth2-mock-server), XOAUTH2 and OAUTHBEARER to the
//! real Postfix, whose Dovecot validates every JWT (signature, issuer, expiry, `email` claim).
//!
//! Each test starts its own token server (`TokenServer::start_trusted`: it signs with the
//! issuer Dovecot trusts and puts its public key in Dovecot's key directory), so its token
//! request counts, short lifetimes and wrong `email` claims are its own; see that function for
//! why this beats sharing the one instance. Token requests are counted on the server side
//! (`GET /stats`).
//!
//! Without the servers these tests panic ("test servers not running: run
//! testenv/smtp-servers.sh start"); they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::config::Settings;
use outbound::{ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use outbound_testkit::oauth::TokenServer;
use outbound_testkit::{unique, Maildir, Maillog, TestEnv};
use serde_json::json;

const CLIENT_ID: &str = "outbound-smtp-test";
const CLIENT_SECRET: &str = "canary-secret-lifecycle-7d1e";
const TENANT: &str = "contoso.onmicrosoft.com";

/// Dify's variables for SMTP with Microsoft client credentials from `server`, STARTTLS on 587.
fn dify_env(env: &TestEnv, server: &TokenServer, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = [
        ("MAIL_TYPE", "smtp".to_string()),
        ("MAIL_DEFAULT_SEND_FROM", env.user()),
        ("SMTP_SERVER", env.host()),
        ("SMTP_PORT", env.port_submission().to_string()),
        ("SMTP_USE_TLS", "true".into()),
        ("SMTP_OPPORTUNISTIC_TLS", "true".into()),
        ("SMTP_TLS_CA_FILE", env.ca_file().display().to_string()),
        ("SMTP_USERNAME", env.user()),
        ("SMTP_AUTH_TYPE", "oauth2".into()),
        ("SMTP_OAUTH2_PROVIDER", "microsoft".into()),
        ("SMTP_CLIENT_ID", CLIENT_ID.into()),
        ("SMTP_CLIENT_SECRET", CLIENT_SECRET.into()),
        ("SMTP_TENANT_ID", TENANT.into()),
        ("MICROSOFT_OAUTH2_AUTHORITY", server.url()),
        ("SMTP_TIMEOUT", "20".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_env_source(&vars).unwrap().unwrap();
    assert!(settings.notes().is_empty(), "{:?}", settings.notes());
    settings
}

/// The seeds' map keys for the same account, implicit TLS on 465, plus `extra`.
fn seed_map(env: &TestEnv, server: &TokenServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut map: Vec<(String, String)> = [
        ("server", env.host()),
        ("port", env.port_smtps().to_string()),
        ("username", env.user()),
        ("use_tls", "true".into()),
        ("opportunistic_tls", "false".into()),
        ("ca_file", env.ca_file().display().to_string()),
        ("auth_type", "oauth2".into()),
        ("oauth2_provider", "microsoft".into()),
        ("client_id", CLIENT_ID.into()),
        ("client_secret", CLIENT_SECRET.into()),
        ("tenant_id", TENANT.into()),
        ("authority", server.url()),
        ("default_from", env.user()),
        ("timeout", "20".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        map.retain(|(key, _)| key != k);
        map.push((k.to_string(), v.to_string()));
    }
    map
}

/// A message with a unique Message-ID; returns it and its `<id>`.
fn message(env: &TestEnv, tag: &str) -> (Message, String) {
    let id = unique(tag);
    let msg = Message::builder()
        .to(format!("bob@{}", env.domain()))
        .subject(format!("{tag} {id}"))
        .text("sent with a token from the token cache")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    (msg, format!("<{id}@{}>", env.domain()))
}

/// Waits until Postfix logged the SASL method and user of queue id `qid`.
fn assert_sasl(log: &Maillog, qid: &str, mechanism: &str, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = log
            .lines()
            .into_iter()
            .find(|l| l.contains(&format!("{qid}: client=")))
        {
            assert!(line.contains(&format!("sasl_method={mechanism}")), "{line}");
            assert!(line.contains(&format!("sasl_username={user}")), "{line}");
            return;
        }
        assert!(Instant::now() < deadline, "{qid} not in the maillog");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Client credentials from the token server; XOAUTH2 on 587 (configured from Dify's
/// variables) and OAUTHBEARER on 465 (configured from the seeds' map keys). Both transports
/// are for the same account, so they share one token cache: one token request in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_xoauth2_on_587_and_oauthbearer_on_465_deliver() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    let log = Maillog::start(env.maillog());

    let xoauth2 = dify_env(&env, &server, &[]).build().unwrap();
    let (msg, mid_587) = message(&env, "oauth2-e2e-587");
    let r587 = xoauth2
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("XOAUTH2 on 587: {e}"));

    let oauthbearer = outbound::create_transport(
        "smtp",
        seed_map(&env, &server, &[("mechanism", "oauthbearer")]),
    )
    .unwrap();
    let (msg, mid_465) = message(&env, "oauth2-e2e-465");
    let r465 = oauthbearer
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("OAUTHBEARER on 465: {e}"));

    let delivered = Maildir::new(env.maildir())
        .wait_for(&[mid_587.clone(), mid_465.clone()], Duration::from_secs(30));
    assert_eq!(delivered[&mid_587].len(), 1);
    assert_eq!(delivered[&mid_465].len(), 1);
    assert_sasl(&log, &r587.provider_id.unwrap(), "XOAUTH2", &env.user());
    assert_sasl(&log, &r465.provider_id.unwrap(), "OAUTHBEARER", &env.user());

    let stats = server.stats().await;
    assert_eq!(stats["token_requests"], 1, "one token for both: {stats}");
    let request = &stats["recent"][0];
    assert_eq!(request["path"], format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(request["grant_type"], "client_credentials");
    assert_eq!(request["client_id"], CLIENT_ID);
    assert_eq!(request["scope"], "https://outlook.office365.com/.default");
    assert_eq!(request["client_secret"], true);
}

/// Tokens that live 5 s; two senders each send a message every ~200 ms for 15.5 s (three
/// lifetimes) through a pool of 2 connections that are replaced every 3 messages, so a new
/// connection authenticates several times a second, each with the cache's current token.
///
/// The cache refreshes a token 1 s before it expires (`refresh_margin(5 s)`), and only when a
/// connection asks for one: the first token is fetched at t≈0, each next one by the first
/// connection opened once the current token has less than 1 s left, i.e. every 4 s plus the
/// wait for that connection (measured here: every ~4.5 s, at t≈0, 4.5, 9, 13.5). So 15.5 s of
/// sending take 4 token requests: about one per lifetime. The assertion allows 3..=5 so that
/// scheduling jitter cannot make it flaky, while a cache that fetched per connection (~50
/// requests) or refreshed late (an expired token, refused by Dovecot, fails a send) fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_lived_tokens_are_renewed_about_once_per_lifetime_and_sends_never_fail() {
    const LIFETIME: u64 = 5;
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(LIFETIME);
    let log = Maillog::start(env.maillog());
    let transport: Arc<dyn Transport> = outbound::create_transport(
        "smtp",
        seed_map(
            &env,
            &server,
            &[
                ("port", &env.port_submission().to_string()),
                ("opportunistic_tls", "true"),
                ("pool_size", "2"),
                ("max_messages", "3"),
            ],
        ),
    )
    .unwrap();

    let started = Instant::now();
    let run_for = Duration::from_millis(LIFETIME * 3000 + 500);
    let mut senders = Vec::new();
    for sender in 0..2 {
        let transport = transport.clone();
        let env = env.clone();
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut failures = Vec::new();
            while started.elapsed() < run_for {
                let (msg, mid) = message(&env, &format!("oauth2-lifetime-{sender}"));
                match transport.send(&msg).await {
                    Ok(receipt) => ids.push((mid, receipt.provider_id.unwrap_or_default())),
                    Err(e) => {
                        failures.push(format!("{:.1} s: {e}", started.elapsed().as_secs_f64()))
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (ids, failures)
        }));
    }
    // The token server's count over time (for the report), and no refresh before 80% of the
    // first lifetime.
    let mut timeline = Vec::new();
    while started.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = server.token_requests().await;
        let t = started.elapsed().as_secs_f64();
        if t < 3.5 {
            assert_eq!(
                n, 1,
                "no refresh before 80% of the first lifetime (t = {t:.1} s)"
            );
        }
        timeline.push(format!("{t:.1}s:{n}"));
    }
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for s in senders {
        let (i, f) = s.await.unwrap();
        ids.extend(i);
        failures.extend(f);
    }
    let requests = server.token_requests().await;
    eprintln!(
        "{} messages in {:.1} s, {} token requests (lifetime {LIFETIME} s); count over time: {}",
        ids.len(),
        started.elapsed().as_secs_f64(),
        requests,
        timeline.join(" ")
    );
    assert!(failures.is_empty(), "sends failed: {failures:#?}");
    assert!(ids.len() >= 100, "kept sending: {} messages", ids.len());
    assert!(
        (3..=5).contains(&requests),
        "about one token request per lifetime: {requests}"
    );
    let (mids, qids): (Vec<String>, Vec<String>) = ids.into_iter().unzip();
    Maildir::new(env.maildir()).wait_for(&mids, Duration::from_secs(60));
    // Server side: how many SMTP connections carried these messages (each authenticated with
    // the token current when it opened).
    let ours: Vec<_> = log
        .sessions()
        .into_iter()
        .filter(|s| s.queue_ids.iter().any(|q| qids.contains(q)))
        .collect();
    let connections = ours.len();
    eprintln!("{connections} connections authenticated during the run");
    // No token was ever refused (an expired one would be, and the retry with a fresh token
    // would hide it from the sender): Dovecot accepted every first AUTH.
    let refused: usize = ours.iter().map(|s| s.auth_failures).sum();
    assert_eq!(refused, 0, "Postfix logged refused tokens: {ours:#?}");
    assert!(
        connections >= mids.len() / 3,
        "a new connection every 3 messages: {connections} for {} messages",
        mids.len()
    );
}

/// 64 sends at once with a cold cache, through a pool that lets all 64 connect at once, and a
/// token server that takes 300 ms to answer: every connection waits for the same one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_sends_with_a_cold_cache_make_one_token_request() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    server.configure(json!({"delay_ms": 300})).await;
    let transport = dify_env(&env, &server, &[("SMTP_POOL_SIZE", "64")])
        .build()
        .unwrap();
    let messages: Vec<(Message, String)> = (0..64)
        .map(|_| message(&env, "oauth2-concurrent"))
        .collect();
    let started = Instant::now();
    let sends = messages.iter().map(|(msg, _)| {
        let t = transport.clone();
        let msg = msg.clone();
        tokio::spawn(async move { t.send(&msg).await })
    });
    let tasks: Vec<_> = sends.collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    let elapsed = started.elapsed();
    let requests = server.token_requests().await;
    eprintln!(
        "64 concurrent sends with a cold cache: {:.2} s, {requests} token request(s)",
        elapsed.as_secs_f64()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(requests, 1, "single flight: {}", server.stats().await);
    let ids: Vec<String> = messages.into_iter().map(|(_, id)| id).collect();
    Maildir::new(env.maildir()).wait_for(&ids, Duration::from_secs(60));
}

/// The cache holds a token Dovecot refuses (its `email` claim is another user: the token server
/// issued it while configured so). The first AUTH is rejected by Dovecot for real (Postfix logs
/// the failed XOAUTH2 login); the transport invalidates the token, fetches one fresh token
/// (now with the right claim) and the same send succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_replaced_once_and_the_send_succeeds() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    let log = Maillog::start(env.maillog());
    let settings = dify_env(&env, &server, &[]);
    let transport = settings.build().unwrap();

    // Warm the transport's own cache (the same shared cache) with a token for someone else.
    server
        .configure(json!({"email": format!("mallory@{}", env.domain())}))
        .await;
    let cache = settings.token_cache().unwrap().unwrap();
    let bad = cache.get().await.unwrap();
    server.configure(json!({"email": env.user()})).await;
    assert_eq!(server.token_requests().await, 1);

    let (msg, mid) = message(&env, "oauth2-rejected-once");
    let receipt = transport
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("the retry with a fresh token should succeed: {e}"));
    assert_eq!(server.token_requests().await, 2, "exactly one refresh");
    let now = cache.current().unwrap();
    assert!(!Arc::ptr_eq(&now, &bad), "the rejected token was replaced");
    Maildir::new(env.maildir()).wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    assert_sasl(&log, &receipt.provider_id.unwrap(), "XOAUTH2", &env.user());
    // Dovecot really refused the first token.
    let lines = log.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SASL XOAUTH2 authentication failed")),
        "Postfix logged the rejected XOAUTH2 login:\n{}",
        lines.join("\n")
    );
}

/// Every token the server issues names another user: the first is rejected, the one retry
/// with a fresh token too, and the send fails with an `Auth` error that carries Dovecot's
/// decoded JSON reason (`{"status":"401",...}`). Two token requests: no retry storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_stays_rejected_is_an_auth_error_with_the_servers_json() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    server
        .configure(json!({"email": format!("mallory@{}", env.domain())}))
        .await;
    let settings = dify_env(&env, &server, &[]);
    let transport = settings.build().unwrap();
    let (msg, _) = message(&env, "oauth2-rejected-twice");
    let err = transport.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(err.exit_code(), 77);
    assert_eq!(err.smtp_code(), Some(535), "{err}");
    let text = err.server_text().unwrap_or_default();
    assert!(
        text.contains(r#""status":"401""#),
        "the decoded JSON is in the server text: {err}"
    );
    assert_eq!(
        server.token_requests().await,
        2,
        "first token and one retry"
    );
    let token = settings
        .token_cache()
        .unwrap()
        .unwrap()
        .current()
        .map(|t| secrecy::ExposeSecret::expose_secret(t.secret()).to_string());
    let shown = format!("{err} {err:?} {transport:?}");
    if let Some(token) = token {
        assert!(!shown.contains(&token));
    }
    assert!(!shown.contains(CLIENT_SECRET));
}

/// A token that dies mid-run: the token server advertises an hour (`expires_in` 3600) but
/// every token really expires after 2 s, as a revoked or clock-skewed token does. The first
/// message goes out with the first token; after it has expired, the next message's new
/// connection is refused by Dovecot, the transport fetches one fresh token and delivers. Each
/// message arrives exactly once, in one attempt each, and no send fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_run_is_replaced_and_nothing_is_lost() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(2);
    server.configure(json!({"advertised_lifetime": 3600})).await;
    let log = Maillog::start(env.maillog());
    // One message per connection, so every send logs in again with the cached token.
    let transport = outbound::create_transport(
        "smtp",
        seed_map(
            &env,
            &server,
            &[
                ("port", &env.port_submission().to_string()),
                ("opportunistic_tls", "true"),
                ("max_messages", "1"),
            ],
        ),
    )
    .unwrap();

    let (first, first_id) = message(&env, "oauth2-dies-mid-run-1");
    let r1 = transport.send(&first).await.unwrap();
    assert_eq!(r1.attempts, 1);
    assert_eq!(server.token_requests().await, 1);
    tokio::time::sleep(Duration::from_millis(3000)).await; // the cached token is now dead

    let (second, second_id) = message(&env, "oauth2-dies-mid-run-2");
    let r2 = transport
        .send(&second)
        .await
        .unwrap_or_else(|e| panic!("the dead token is replaced, the send succeeds: {e}"));
    assert_eq!(r2.attempts, 1, "the token is replaced inside the attempt");
    // The cache believed the first token good for an hour: only Dovecot's refusal of the
    // dead token can have caused the second request.
    assert_eq!(server.token_requests().await, 2, "exactly one fresh token");

    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(
        &[first_id.clone(), second_id.clone()],
        Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a duplicate to show
    for id in [&first_id, &second_id] {
        assert_eq!(maildir.files_for(id).len(), 1, "{id} arrived exactly once");
    }
    assert_sasl(&log, &r2.provider_id.unwrap(), "XOAUTH2", &env.user());
}
