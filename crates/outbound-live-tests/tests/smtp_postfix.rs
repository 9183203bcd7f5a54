//! The SMTP transport against a real MTA: the private Postfix + Dovecot of
//! `testenv/smtp-servers.sh` (587 STARTTLS, 465 implicit TLS, 25 plain; SASL PLAIN and LOGIN;
//! every @example.test message lands in one Maildir; reject*@example.test refused at RCPT).
//!
//! Deliveries are found in the Maildir by their unique Message-ID and compared byte for byte
//! with what was sent; the mechanism used is read back from Postfix's own log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use outbound::smtp::{Credentials, Mechanism, SmtpTransport, TlsMode};
use outbound::{Attachment, ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use outbound_testkit::proxy::{Break, Proxy};
use outbound_testkit::{crlf_to_lf, delivered_to, unique, Maildir, Maillog, TestEnv};

fn builder(env: &TestEnv, port: u16, mode: TlsMode) -> outbound::smtp::SmtpTransportBuilder {
    SmtpTransport::builder(env.host())
        .port(port)
        .tls(mode)
        .ca_file(env.ca_file())
        .timeout(Duration::from_secs(20))
}

fn with_password(env: &TestEnv, port: u16, mode: TlsMode) -> outbound::smtp::SmtpTransportBuilder {
    builder(env, port, mode).credentials(Credentials::password(env.user(), env.password()))
}

/// A message with everything that can go wrong on the wire: lines starting with dots (dot
/// stuffing), a lone "." line, 8-bit UTF-8 in the body, a long header, an attachment. It is
/// rendered once and sent as a raw message so the test knows the exact bytes that went out.
fn tricky_message(env: &TestEnv, tag: &str) -> (Message, Vec<u8>, String) {
    let id = unique(tag);
    let mid = format!("{id}@{}", env.domain());
    let rich = Message::builder()
        .from(format!("Alice <{}>", env.user()))
        .to(format!("bob@{}", env.domain()))
        .subject(format!("Grüße über SMTP {id}"))
        .text(".leading dot\n..two dots\n.\nlast line")
        .html("<p>.hello</p>")
        .attach(Attachment::from_bytes(
            "data.bin",
            vec![0u8, 1, 2, 255, b'.', b'\r', b'\n'],
        ))
        .header("X-Test-Long", "x".repeat(200))
        .message_id(mid.clone())
        .build()
        .unwrap();
    let mut bytes = rich.render(None).unwrap();
    // Append a raw 8-bit line to the body so BODY=8BITMIME is needed.
    bytes.extend_from_slice("Schöne Grüße, 8-bit\r\n.\r\n.. end\r\n".as_bytes());
    let msg = Message::builder()
        .raw(bytes.clone())
        .to(format!("bob@{}", env.domain()))
        .build()
        .unwrap();
    assert_eq!(
        msg.render(None).unwrap(),
        bytes,
        "a raw message renders to exactly its bytes"
    );
    (msg, bytes, format!("<{mid}>"))
}

/// Waits until the maillog shows queue id `qid` with `sasl_method=...`.
fn sasl_method_of(log: &Maillog, qid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for line in log.lines() {
            if let Some(pos) = line.find(&format!("{qid}: client=")) {
                if let Some(m) = line[pos..].split("sasl_method=").nth(1) {
                    return m.split(',').next().unwrap_or_default().trim().to_string();
                }
                return "none".to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "queue id {qid} never appeared in the maillog"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn deliver_and_compare(port: u16, mode: TlsMode, mechanism: Mechanism) {
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let transport = with_password(&env, port, mode)
        .mechanism(mechanism)
        .build()
        .unwrap();
    let (msg, sent, mid) = tricky_message(&env, &format!("p{port}-{mechanism}"));
    let receipt = transport
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("send on {port} ({mode}) with {mechanism} failed: {e}"));
    assert_eq!(receipt.message_id, mid);
    assert_eq!(receipt.accepted, [format!("bob@{}", env.domain())]);
    assert!(receipt.rejected.is_empty());
    assert_eq!(receipt.attempts, 1);
    let qid = receipt.provider_id.clone().expect("Postfix's queue id");
    assert!(
        qid.chars().all(|c| c.is_ascii_alphanumeric()),
        "the queue id, not the whole reply: {qid}"
    );

    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    assert_eq!(files[&mid].len(), 1, "delivered exactly once");
    let stored = std::fs::read(&files[&mid][0]).unwrap();
    let expected = crlf_to_lf(&sent);
    assert!(
        stored.ends_with(&expected),
        "the delivered file must end with the exact bytes sent (modulo CRLF)\n--- sent ---\n{}\n--- stored ---\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(&stored)
    );
    let prepended = &stored[..stored.len() - expected.len()];
    let prepended = String::from_utf8_lossy(prepended);
    for line in prepended.lines() {
        assert!(
            line.starts_with("Return-Path:")
                || line.starts_with("X-Original-To:")
                || line.starts_with("Delivered-To:")
                || line.starts_with("Received:")
                || line.starts_with(' ')
                || line.starts_with('\t'),
            "Postfix only prepends trace headers, got {line:?}"
        );
    }
    assert_eq!(delivered_to(&stored), [format!("bob@{}", env.domain())]);

    // Postfix's own log names the SASL mechanism that authenticated this message.
    assert_eq!(sasl_method_of(&log, &qid), mechanism.as_str());
    let stats = transport.stats();
    assert_eq!(stats.transactions, 1);
    assert!(
        stats.max_commands_per_write >= 3,
        "MAIL, RCPT and DATA went out in one write: {stats}"
    );
    transport.close().await;
}

#[tokio::test]
async fn starttls_587_with_plain_delivers_exact_bytes() {
    deliver_and_compare(587, TlsMode::StartTls, Mechanism::Plain).await;
}

#[tokio::test]
async fn starttls_587_with_login_delivers_exact_bytes() {
    deliver_and_compare(587, TlsMode::StartTls, Mechanism::Login).await;
}

#[tokio::test]
async fn implicit_465_with_plain_delivers_exact_bytes() {
    deliver_and_compare(465, TlsMode::Implicit, Mechanism::Plain).await;
}

#[tokio::test]
async fn implicit_465_with_login_delivers_exact_bytes() {
    deliver_and_compare(465, TlsMode::Implicit, Mechanism::Login).await;
}

#[tokio::test]
async fn plain_25_with_plain_delivers_exact_bytes() {
    deliver_and_compare(25, TlsMode::None, Mechanism::Plain).await;
}

#[tokio::test]
async fn plain_25_with_login_delivers_exact_bytes() {
    deliver_and_compare(25, TlsMode::None, Mechanism::Login).await;
}

#[tokio::test]
async fn built_message_is_delivered_verbatim_without_auth_on_25() {
    // A relay without credentials: no AUTH at all (port 25 accepts mail for example.test).
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let transport = builder(&env, env.port_plain(), TlsMode::None)
        .build()
        .unwrap();
    let id = unique("noauth");
    let msg = Message::builder()
        .from(format!("App <app@{}>", env.domain()))
        .to(format!("carol@{}", env.domain()))
        .subject(format!("plain text {id}"))
        .text("hello\n.\n.dot")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    let mut sent = msg.render(None).unwrap();
    assert_eq!(
        msg.render(None).unwrap(),
        sent,
        "single-part rendering is deterministic"
    );
    // DATA must end with CRLF before the final "."; the transport adds it when the rendered
    // message lacks it, so that is what the server stores.
    if !sent.ends_with(b"\r\n") {
        sent.extend_from_slice(b"\r\n");
    }
    let receipt = transport.send(&msg).await.unwrap();
    let mid = format!("<{id}@{}>", env.domain());
    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    let stored = std::fs::read(&files[&mid][0]).unwrap();
    assert!(
        stored.ends_with(&crlf_to_lf(&sent)),
        "--- sent ---\n{}\n--- stored ---\n{}",
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(&stored)
    );
    assert_eq!(
        sasl_method_of(&log, receipt.provider_id.as_deref().unwrap()),
        "none"
    );
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_with_535() {
    let env = TestEnv::load();
    let transport = builder(&env, env.port_submission(), TlsMode::StartTls)
        .credentials(Credentials::password(env.user(), "wrong-canary-pw"))
        .build()
        .unwrap();
    let msg = Message::builder()
        .from(env.user())
        .to(format!("bob@{}", env.domain()))
        .text("never sent")
        .build()
        .unwrap();
    for err in [
        transport.send(&msg).await.unwrap_err(),
        transport.verify().await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert_eq!(err.smtp_code(), Some(535), "{err}");
        assert_eq!(err.exit_code(), 77);
        let text = format!("{err} {err:?}");
        assert!(text.contains(&env.user()), "{text}");
        assert!(!text.contains("wrong-canary-pw"), "{text}");
    }
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error_and_the_ca_file_fixes_it() {
    let env = TestEnv::load();
    for (port, mode) in [
        (env.port_submission(), TlsMode::StartTls),
        (env.port_smtps(), TlsMode::Implicit),
    ] {
        let no_ca = SmtpTransport::builder(env.host())
            .port(port)
            .tls(mode)
            .credentials(Credentials::password(env.user(), env.password()))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let err = no_ca.verify().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls, "{port}: {err}");
        assert!(err.to_string().contains("not trusted"), "{err}");

        let with_ca = with_password(&env, port, mode).build().unwrap();
        with_ca.verify().await.unwrap();

        // Explicitly turning verification off also connects (and is warned about).
        let insecure = SmtpTransport::builder(env.host())
            .port(port)
            .tls(mode)
            .danger_accept_invalid_certs(true)
            .credentials(Credentials::password(env.user(), env.password()))
            .build()
            .unwrap();
        insecure.verify().await.unwrap();
    }
}

#[tokio::test]
async fn wrong_tls_mode_for_the_port_is_explained() {
    let env = TestEnv::load();
    // Implicit TLS against the STARTTLS port: the server greets in plain text.
    let t = builder(&env, env.port_submission(), TlsMode::Implicit)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = t.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("implicit TLS"), "{err}");
    // STARTTLS against the implicit port: no greeting ever comes. Issue 9 changed this from a
    // retryable timeout (exit 75, so job queues retried a configuration mistake forever) to a
    // configuration error with the fix, and made it fast even with a long timeout.
    for timeout in [1, 30] {
        let t = builder(&env, env.port_smtps(), TlsMode::StartTls)
            .timeout(Duration::from_secs(timeout))
            .build()
            .unwrap();
        let started = Instant::now();
        let err = t.verify().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert_eq!(err.exit_code(), 78);
        assert!(err.to_string().contains("implicit TLS"), "{err}");
        assert!(err.to_string().contains("smtps://"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn partial_recipient_rejection_is_reported_per_recipient() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_submission(), TlsMode::StartTls)
        .build()
        .unwrap();
    let id = unique("partial");
    let bob = format!("bob@{}", env.domain());
    let carol = format!("carol@{}", env.domain());
    let msg = Message::builder()
        .from(env.user())
        .to(bob.clone())
        .to(env.reject_rcpt())
        .cc(carol.clone())
        .subject(format!("partial {id}"))
        .text("two of three")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    let receipt = transport.send(&msg).await.unwrap();
    assert_eq!(receipt.accepted, [bob.clone(), carol.clone()]);
    assert_eq!(receipt.rejected.len(), 1, "{receipt:?}");
    let r = &receipt.rejected[0];
    assert_eq!(r.address, env.reject_rcpt());
    assert!((500..600).contains(&r.code), "{r:?}");
    assert_eq!(r.code, 550);
    assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
    assert!(r.text.contains("No such user"), "{r:?}");

    let mid = format!("<{id}@{}>", env.domain());
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    // One copy per accepted recipient; wait for the second.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut files = maildir.files_for(&mid);
    while files.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        files = maildir.files_for(&mid);
    }
    let mut rcpts: Vec<String> = files
        .iter()
        .flat_map(|f| delivered_to(&std::fs::read(f).unwrap()))
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, [bob, carol]);
}

#[tokio::test]
async fn every_recipient_refused_is_permanent_and_sends_no_data() {
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let transport = with_password(&env, env.port_submission(), TlsMode::StartTls)
        .build()
        .unwrap();
    let msg = Message::builder()
        .from(env.user())
        .to(env.reject_rcpt())
        .to(format!("reject-also@{}", env.domain()))
        .text("nobody")
        .build()
        .unwrap();
    let err = transport.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert_eq!(err.smtp_code(), Some(550));
    assert!(err.to_string().contains(&env.reject_rcpt()), "{err}");
    assert!(err.to_string().contains("reject-also@"), "{err}");
    // The connection was reset and reused: a second send works on it.
    let ok = Message::builder()
        .from(env.user())
        .to(format!("bob@{}", env.domain()))
        .text("after the refusal")
        .build()
        .unwrap();
    transport.send(&ok).await.unwrap();
    let stats = transport.stats();
    assert_eq!(stats.connections_opened, 1, "{stats}");
    assert_eq!(stats.reused_connections, 1, "{stats}");
    transport.close().await;
    // Postfix counted the session's commands: DATA once (the second message), RSET once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = log.sessions();
        if let Some(s) = sessions
            .iter()
            .find(|s| s.disconnect_stats.contains("rset="))
        {
            assert!(
                s.disconnect_stats.contains("rset=1"),
                "{}",
                s.disconnect_stats
            );
            assert!(
                s.disconnect_stats.contains("data=1"),
                "{}",
                s.disconnect_stats
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no session with RSET in the maillog"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn smtputf8_address_is_delivered() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_submission(), TlsMode::StartTls)
        .build()
        .unwrap();
    let id = unique("utf8");
    let msg = Message::builder()
        .from(env.user())
        .to(format!("jörg@{}", env.domain()))
        .subject(format!("utf8 {id}"))
        .text("grüße")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    let receipt = transport.send(&msg).await.unwrap();
    assert_eq!(receipt.accepted, [format!("jörg@{}", env.domain())]);
    let mid = format!("<{id}@{}>", env.domain());
    Maildir::new(env.maildir()).wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
}

#[tokio::test]
async fn oversized_message_is_refused_before_data_naming_both_sizes() {
    let env = TestEnv::load();
    let limit: usize = env.get("OUTBOUND_TEST_MAX_MESSAGE_SIZE").parse().unwrap();
    let transport = with_password(&env, env.port_submission(), TlsMode::StartTls)
        .build()
        .unwrap();
    let big = "a".repeat(76) + "\n";
    let msg = Message::builder()
        .from(env.user())
        .to(format!("bob@{}", env.domain()))
        .text(big.repeat(limit / 77 + 1000))
        .build()
        .unwrap();
    let size = msg.render(None).unwrap().len();
    let err = transport.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains(&size.to_string()), "{err}");
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    let stats = transport.stats();
    assert_eq!(stats.transactions, 0);
    // Only the session setup went out: EHLO, STARTTLS, EHLO, AUTH.
    assert_eq!(stats.commands, 4, "{stats}");
}

#[tokio::test]
async fn dify_environment_and_dsn_configurations_send() {
    let env = TestEnv::load();
    let vars: std::collections::HashMap<String, String> = [
        ("MAIL_TYPE", "smtp".to_string()),
        ("SMTP_SERVER", env.host()),
        ("SMTP_PORT", env.port_submission().to_string()),
        ("SMTP_USERNAME", env.user()),
        ("SMTP_PASSWORD", env.password()),
        ("SMTP_USE_TLS", "true".into()),
        ("SMTP_OPPORTUNISTIC_TLS", "true".into()),
        ("SMTP_TLS_CA_FILE", env.ca_file().display().to_string()),
        ("SMTP_LOCAL_HOSTNAME", "outbound-test.example".into()),
        ("MAIL_DEFAULT_SEND_FROM", env.user()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let from_env = outbound::config::Settings::from_env_source(&vars)
        .unwrap()
        .unwrap()
        .build()
        .unwrap();
    assert!(
        from_env.describe().contains("(starttls, as alice@"),
        "{}",
        from_env.describe()
    );
    let user = percent_encode(&env.user());
    let from_dsn = outbound::from_dsn(&format!(
        "smtps://{user}:{}@{}:{}?ca_file={}&from={}",
        percent_encode(&env.password()),
        env.host(),
        env.port_smtps(),
        env.ca_file().display(),
        env.user()
    ))
    .unwrap();
    for t in [from_env, from_dsn] {
        let msg = Message::builder()
            .to(format!("bob@{}", env.domain()))
            .subject("configured")
            .text("via configuration")
            .build()
            .unwrap();
        t.verify().await.unwrap();
        let r = t.send(&msg).await.unwrap();
        assert_eq!(r.transport, "smtp");
        assert!(!format!("{t:?}").contains(&env.password()));
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn simple(env: &TestEnv, tag: &str) -> (Message, String) {
    let id = unique(tag);
    let msg = Message::builder()
        .from(env.user())
        .to(format!("bob@{}", env.domain()))
        .subject(tag.to_string())
        .text("pooled")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    (msg, format!("<{id}@{}>", env.domain()))
}

/// An idle pooled connection that the server (here: a proxy in front of Postfix) closed is
/// noticed before use and replaced; one that only fails when used (its first command gets no
/// answer) is replaced after that failure — before the end of DATA, so the message is sent
/// exactly once either way.
#[tokio::test]
async fn broken_idle_connections_are_replaced_without_losing_the_message() {
    let env = TestEnv::load();
    let proxy = Proxy::start(format!("{}:{}", env.host(), env.port_plain())).await;
    let transport = with_password(&env, proxy.port, TlsMode::None)
        .build()
        .unwrap();
    let mut ids = Vec::new();

    let (m, id) = simple(&env, "idle-1").await;
    transport.send(&m).await.unwrap();
    ids.push(id);

    // 1. The connection is closed while idle: seen on checkout, no failed attempt.
    proxy.break_all(Break::CloseNow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (m, id) = simple(&env, "idle-2").await;
    let r = transport.send(&m).await.unwrap();
    assert_eq!(r.attempts, 1);
    ids.push(id);
    assert_eq!(proxy.accepted(), 2);

    // 2. The connection looks fine but dies when used: replaced, attempts = 2.
    proxy.break_all(Break::CloseOnNextWrite);
    let (m, id) = simple(&env, "idle-3").await;
    let r = transport.send(&m).await.unwrap();
    assert_eq!(r.attempts, 2, "{r:?}");
    ids.push(id);
    assert_eq!(proxy.accepted(), 3);
    let stats = transport.stats();
    assert_eq!(stats.broken_connections_replaced, 1, "{stats}");
    assert_eq!(stats.transactions, 3);

    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(&ids, Duration::from_secs(30));
    for id in &ids {
        assert_eq!(files[id].len(), 1, "{id} delivered exactly once");
    }
}

#[tokio::test]
async fn messages_per_connection_cap_opens_new_connections() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_plain(), TlsMode::None)
        .max_messages_per_connection(2)
        .build()
        .unwrap();
    for i in 0..5 {
        let (m, _) = simple(&env, &format!("cap-{i}")).await;
        transport.send(&m).await.unwrap();
    }
    let stats = transport.stats();
    assert_eq!(stats.connections_opened, 3, "{stats}");
    assert_eq!(stats.reused_connections, 2, "{stats}");
    assert_eq!(stats.open_connections, 1, "{stats}");
}

#[tokio::test]
async fn idle_connections_expire() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_plain(), TlsMode::None)
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (m, _) = simple(&env, "expire").await;
    transport.send(&m).await.unwrap();
    assert_eq!(transport.stats().open_connections, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        transport.stats().open_connections,
        0,
        "the reaper closed the idle connection"
    );
    let (m, _) = simple(&env, "expire-2").await;
    transport.send(&m).await.unwrap();
    assert_eq!(transport.stats().connections_opened, 2);
}

#[tokio::test]
async fn verify_keeps_the_connection_cap_when_idle_connections_exist() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_plain(), TlsMode::None)
        .pool_size(1)
        .build()
        .unwrap();
    let (m, _) = simple(&env, "cap-verify").await;
    transport.send(&m).await.unwrap();
    assert_eq!(transport.stats().open_connections, 1);
    transport.verify().await.unwrap();
    transport.send(&m).await.unwrap();
    let stats = transport.stats();
    assert_eq!(stats.max_open_connections, 1, "{stats}");
    assert_eq!(stats.connections_opened, 3, "{stats}");
}

/// Issue 9: a comma inside one `to` value made the second mailbox the only recipient, under
/// the first one's display name. Now every mailbox of the list is a recipient, and a quoted
/// local part (valid in RFC 5321) is sent quoted.
#[tokio::test]
async fn address_lists_and_quoted_local_parts_reach_every_recipient() {
    let env = TestEnv::load();
    let transport = builder(&env, env.port_plain(), TlsMode::None)
        .build()
        .unwrap();
    let d = env.domain();
    let id = unique("lists");
    let msg = Message::builder()
        .from(format!("App <app@{d}>"))
        .to(format!("Ada <ada@{d}>, <eve@{d}>"))
        .cc(format!("\"john doe\"@{d}"))
        .subject(format!("lists {id}"))
        .text("hello")
        .message_id(format!("{id}@{d}"))
        .build()
        .unwrap();
    let receipt = transport.send(&msg).await.unwrap();
    assert_eq!(
        receipt.accepted,
        [
            format!("ada@{d}"),
            format!("eve@{d}"),
            format!("\"john doe\"@{d}")
        ],
        "{receipt:?}"
    );
    let mid = format!("<{id}@{d}>");
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    // The catch-all Maildir gets one copy per recipient; they arrive one by one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut files = maildir.files_for(&mid);
    while files.len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        files = maildir.files_for(&mid);
    }
    let mut delivered: Vec<String> = files
        .iter()
        .flat_map(|f| delivered_to(&std::fs::read(f).unwrap()))
        .collect();
    delivered.sort();
    let mut want = vec![
        format!("ada@{d}"),
        format!("eve@{d}"),
        format!("\"john doe\"@{d}"),
    ];
    want.sort();
    assert_eq!(delivered, want);
}

/// SMTP smuggling: bodies with bare LF, `\n.\n`, `\r\n.\n` and `\n.\r\n` must not end DATA
/// early at the real Postfix, so nothing after them can be read as a second message. Exactly
/// one message arrives, with the whole body; the smuggled one never does.
#[tokio::test]
async fn bodies_crafted_for_smtp_smuggling_cannot_end_data_early() {
    let env = TestEnv::load();
    let transport = builder(&env, env.port_plain(), TlsMode::None)
        .build()
        .unwrap();
    let d = env.domain();
    for (label, ending) in [
        ("lf-dot-lf", "\n.\n"),
        ("crlf-dot-lf", "\r\n.\n"),
        ("lf-dot-crlf", "\n.\r\n"),
        ("cr-dot-cr", "\r.\r"),
    ] {
        for raw in [false, true] {
            let id = unique(&format!("smuggle-{label}"));
            let smuggled = unique("smuggled");
            let payload = format!(
                "first part{ending}MAIL FROM:<evil@{d}>\r\nRCPT TO:<bob@{d}>\r\nDATA\r\n\
                 Message-ID: <{smuggled}@{d}>\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n\
                 last line {id}"
            );
            let msg = if raw {
                Message::builder()
                    .raw(format!(
                        "From: app@{d}\r\nTo: bob@{d}\r\nSubject: raw {id}\r\nMessage-ID: <{id}@{d}>\r\n\r\n{payload}\r\n"
                    ))
                    .recipients_from_headers(true)
                    .build()
                    .unwrap()
            } else {
                Message::builder()
                    .from(format!("app@{d}"))
                    .to(format!("bob@{d}"))
                    .subject(format!("built {id}"))
                    .text(payload.clone())
                    .message_id(format!("{id}@{d}"))
                    .build()
                    .unwrap()
            };
            transport.send(&msg).await.unwrap();
            let mid = format!("<{id}@{d}>");
            let mut maildir = Maildir::new(env.maildir());
            let files = maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
            assert_eq!(files[&mid].len(), 1, "{label} raw={raw}");
            let stored =
                String::from_utf8_lossy(&std::fs::read(&files[&mid][0]).unwrap()).into_owned();
            assert!(
                stored.contains(&format!("last line {id}")),
                "{label} raw={raw}: the body was cut:\n{stored}"
            );
            assert!(
                stored.contains("MAIL FROM:<evil@"),
                "{label} raw={raw}: delivered as text"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                maildir.files_for(&format!("<{smuggled}@{d}>")).is_empty(),
                "{label} raw={raw}: a smuggled message was delivered"
            );
        }
    }
}

/// Issue 19: an inline image with a binary attachment, in either order, through Postfix's
/// submission port (STARTTLS, PLAIN). Before the fix, rendering failed when the attachment
/// came first ("an attachment's place in the message was lost"). Each delivery is compared
/// with the rendered bytes (modulo CRLF) and parsed back, part by part.
#[tokio::test]
async fn an_inline_logo_and_a_binary_invoice_arrive_intact_in_either_order() {
    let env = TestEnv::load();
    let transport = with_password(&env, env.port_submission(), TlsMode::StartTls)
        .build()
        .unwrap();
    let logo: Vec<u8> = (0..=255u8).chain(b"\r\n.\r\n".iter().copied()).collect();
    let pdf: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut maildir = Maildir::new(env.maildir());
    for logo_first in [false, true] {
        let id = unique(&format!("inline-attach-{logo_first}"));
        let inline = Attachment::from_bytes("logo.png", logo.clone()).inline("logo");
        let attached = Attachment::from_bytes("invoice.pdf", pdf.clone());
        let (first, second) = if logo_first {
            (inline, attached)
        } else {
            (attached, inline)
        };
        let msg = Message::builder()
            .from(env.user())
            .to(format!("bob@{}", env.domain()))
            .subject(format!("Invoice {id}"))
            .text("Your invoice is attached.")
            .html("<img src=\"cid:logo\"><p>Your invoice is attached.</p>")
            .attach(first)
            .attach(second)
            .message_id(format!("{id}@{}", env.domain()))
            .build()
            .unwrap();
        let sent = msg.render(None).unwrap();
        transport.send(&msg).await.unwrap();
        let mid = format!("<{id}@{}>", env.domain());
        let files = maildir.wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
        let stored = std::fs::read(&files[&mid][0]).unwrap();
        assert!(
            stored.ends_with(&crlf_to_lf(&sent)),
            "logo first: {logo_first}"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&stored)
            .unwrap();
        let part = |ct: &str| {
            parsed
                .parts
                .iter()
                .find(|p| {
                    p.content_type().is_some_and(|c| {
                        format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")) == ct
                    })
                })
                .unwrap_or_else(|| panic!("no {ct} part"))
        };
        use mail_parser::MimeHeaders;
        let image = part("image/png");
        assert_eq!(image.contents(), logo.as_slice());
        assert_eq!(image.content_id(), Some("logo"));
        assert_eq!(
            image.content_disposition().map(|d| d.ctype()),
            Some("inline")
        );
        let invoice = part("application/pdf");
        assert_eq!(invoice.contents(), pdf.as_slice());
        assert_eq!(
            invoice.content_disposition().map(|d| d.ctype()),
            Some("attachment")
        );
        assert_eq!(invoice.attachment_name(), Some("invoice.pdf"));
    }
    transport.close().await;
}
