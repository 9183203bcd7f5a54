//! Who may relay: AUTH PLAIN and LOGIN against a users file, AUTH only after TLS off
//! loopback, the delay and the lockout, allowed networks, and the senders a user may use.
//! Clients "off loopback" are sessions run with `serve_connection` under a documentation
//! address (the real network case is a live test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use outbound::relay::{AuthLimits, Limits};
use relay_support::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn auth_plain_and_login_against_the_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[("alice", "wonder land", &[]), ("bob", "builder", &[])],
    );
    let relay = Relay::start(|b| b.users_file(&users)).await;

    // With a users file, loopback clients authenticate too.
    let mut c = relay.client().await;
    let ehlo = c.hello().await;
    assert!(ehlo.has_line("AUTH PLAIN LOGIN"), "{:?}", ehlo.lines);
    assert!(ehlo.has_line("AUTH=PLAIN LOGIN"), "{:?}", ehlo.lines);
    let a = c.expect("MAIL FROM:<a@example.com>", 530).await;
    assert_eq!(a.text(), "5.7.0 Authentication required");
    let a = c.auth_plain("alice", "wonder land").await;
    assert_eq!((a.code, a.text()), (235, "2.7.0 Authentication successful"));
    assert_eq!(c.expect("AUTH PLAIN", 503).await.status(), "5.5.1");
    let msg = message("a@example.com", "b@example.com", "plain", "x");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
    let stored = relay.spool.messages();
    assert_eq!(stored[0].envelope.user.as_ref().unwrap().name, "alice");
    assert!(stored[0].text().contains("with ESMTPA id"));

    // LOGIN with the challenges.
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.expect("AUTH LOGIN", 334).await;
    assert_eq!(a.lines, ["334 VXNlcm5hbWU6"]);
    let a = c.expect(&b64("bob"), 334).await;
    assert_eq!(a.lines, ["334 UGFzc3dvcmQ6"]);
    c.expect(&b64("builder"), 235).await;

    // LOGIN with the user name in the command; PLAIN after an empty challenge.
    let mut c = relay.client().await;
    c.hello().await;
    c.expect(&format!("AUTH LOGIN {}", b64("bob")), 334).await;
    c.expect(&b64("builder"), 235).await;
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.expect("AUTH PLAIN", 334).await;
    assert_eq!(a.lines, ["334 "]);
    c.expect(&b64("\0alice\0wonder land"), 235).await;
}

#[tokio::test]
async fn auth_refusals_and_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let relay = Relay::start(|b| b.users_file(&users)).await;
    let mut c = relay.client().await;
    c.reply().await;
    assert_eq!(
        c.expect("AUTH PLAIN", 503).await.text(),
        "5.5.1 Send EHLO first"
    );
    c.expect("EHLO client.test", 250).await;
    assert_eq!(c.expect("AUTH CRAM-MD5", 504).await.status(), "5.5.4");
    assert_eq!(
        c.expect("AUTH PLAIN !!notbase64", 501).await.status(),
        "5.5.2"
    );
    c.expect("AUTH LOGIN", 334).await;
    assert_eq!(
        c.expect("*", 501).await.text(),
        "5.7.0 Authentication cancelled"
    );
    let a = c.auth_plain("alice", "wrong").await;
    assert_eq!((a.code, a.status()), (535, "5.7.8"));
    assert_eq!(c.auth_plain("nobody", "pw").await.code, 535);
    // Acting for another identity: refused like a wrong password.
    let a = c
        .cmd(&format!("AUTH PLAIN {}", b64("bob\0alice\0pw")))
        .await;
    assert_eq!(a.code, 535);
    // A response without the two NULs.
    let a = c.cmd(&format!("AUTH PLAIN {}", b64("alicepw"))).await;
    assert_eq!((a.code, a.status()), (501, "5.5.2"));
    c.expect("AUTH LOGIN", 334).await;
    let a = c.cmd(&"A".repeat(13000)).await;
    assert_eq!((a.code, a.status()), (500, "5.5.6"));
    // AUTH within a transaction is out of sequence (after a successful one).
    c.auth_plain("alice", "pw").await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    assert_eq!(c.expect("AUTH PLAIN", 503).await.status(), "5.5.1");
}

#[tokio::test]
async fn no_users_no_auth() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.auth_plain("alice", "pw").await;
    assert_eq!(
        (a.code, a.text()),
        (503, "5.5.1 Authentication not enabled")
    );
}

fn lockout_limits() -> Limits {
    Limits {
        auth: AuthLimits {
            first_delay: Duration::from_millis(150),
            max_delay: Duration::from_millis(400),
            lock_after: 3,
            lock_for: Duration::from_secs(60),
            ..AuthLimits::default()
        },
        ..Limits::default()
    }
}

/// Fails three times as `user`: slower each time, the third locks out and closes.
async fn fail_three_times(c: &mut Client, user: &str) {
    for (n, at_least) in [(1, 150), (2, 300)] {
        let start = Instant::now();
        let a = c.auth_plain(user, "wrong").await;
        assert_eq!(a.code, 535, "failure {n}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(at_least),
            "failure {n} took {took:?}"
        );
    }
    let a = c.auth_plain(user, "wrong").await;
    assert_eq!(a.code, 421);
    assert_eq!(
        a.text(),
        "4.7.0 relay.test Too many failed authentications, try again later"
    );
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn failed_auth_is_slowed_then_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[("alice", "right", &[]), ("bob", "right", &[])],
    );
    let relay = Relay::start(|b| b.users_file(&users).limits(lockout_limits())).await;
    let mut c = relay.client().await;
    c.hello().await;
    fail_three_times(&mut c, "alice").await;

    // Locked out now: even the right password is answered 454, at once.
    let mut c = relay.client().await;
    c.hello().await;
    let start = Instant::now();
    let a = c.auth_plain("alice", "right").await;
    assert_eq!((a.code, a.status()), (454, "4.7.0"));
    assert!(start.elapsed() < Duration::from_millis(150));
    c.expect("MAIL FROM:<a@example.com>", 530).await;
    // On loopback the lockout is per user name: the host's other programs go on.
    assert_eq!(c.auth_plain("bob", "right").await.code, 235);
}

#[tokio::test]
async fn off_loopback_the_lockout_is_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[("alice", "right", &[]), ("bob", "right", &[])],
    );
    let (cert, key, root) = certificate(dir.path());
    let mut relay = Relay::bind(|b| {
        b.users_file(&users)
            .tls_files(&cert, &key)
            .limits(lockout_limits())
    })
    .await;
    let server = Arc::new(relay.server.take().unwrap());
    let tls_client = |ip: &'static str| {
        let server = server.clone();
        let root = root.clone();
        async move {
            let mut c = connect_as(&server, remote(ip), false);
            c.hello().await;
            let mut c = c.start_tls(&root).await;
            c.expect("EHLO client.test", 250).await;
            c
        }
    };
    let mut c = tls_client("203.0.113.20").await;
    fail_three_times(&mut c, "alice").await;
    let mut c = tls_client("203.0.113.20").await;
    let a = c.auth_plain("bob", "right").await;
    assert_eq!((a.code, a.status()), (454, "4.7.0"));
    // Another address is not locked out.
    let mut c = tls_client("203.0.113.21").await;
    assert_eq!(c.auth_plain("alice", "right").await.code, 235);
}

/// A bound relay (not listening for real) for `serve_connection` sessions.
async fn relay_for_sessions(
    users: &std::path::Path,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Arc<outbound::relay::RelayServer> {
    let mut relay = Relay::bind(|b| {
        let b = b
            .users_file(users)
            .allow_from("192.0.2.0/24".parse().unwrap());
        match cert {
            Some((c, k)) => b.tls_files(c, k),
            None => b,
        }
    })
    .await;
    Arc::new(relay.server.take().unwrap())
}

#[tokio::test]
async fn off_loopback_auth_needs_tls_first() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let (cert, key, root) = certificate(dir.path());
    let server = relay_for_sessions(&users, Some((&cert, &key))).await;

    let mut c = connect_as(&server, remote("203.0.113.7"), false);
    let ehlo = c.hello().await;
    assert!(ehlo.has_line("STARTTLS"));
    assert!(
        !ehlo.lines.iter().any(|l| l.contains("AUTH")),
        "AUTH offered in clear: {:?}",
        ehlo.lines
    );
    let a = c.auth_plain("alice", "pw").await;
    assert_eq!(
        (a.code, a.text()),
        (530, "5.7.0 Must issue a STARTTLS command first")
    );
    let a = c.expect("MAIL FROM:<a@example.com>", 530).await;
    assert_eq!(a.text(), "5.7.0 Must issue a STARTTLS command first");

    let mut c = c.start_tls(&root).await;
    let ehlo = c.expect("EHLO client.test", 250).await;
    assert!(ehlo.has_line("AUTH PLAIN LOGIN"));
    assert!(!ehlo.has_line("STARTTLS"));
    c.expect("MAIL FROM:<a@example.com>", 530).await;
    assert_eq!(c.auth_plain("alice", "pw").await.code, 235);
    let msg = message("a@example.com", "b@example.com", "tls", "x");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn off_loopback_without_tls_configured_nobody_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let server = relay_for_sessions(&users, None).await;
    let mut c = connect_as(&server, remote("203.0.113.7"), false);
    let ehlo = c.hello().await;
    assert!(!ehlo
        .lines
        .iter()
        .any(|l| l.contains("AUTH") || l.contains("STARTTLS")));
    assert_eq!(c.auth_plain("alice", "pw").await.code, 530);
}

#[tokio::test]
async fn allowed_networks_relay_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let server = relay_for_sessions(&users, None).await;
    // Inside 192.0.2.0/24, IPv4-mapped IPv6 included.
    for ip in ["192.0.2.55", "::ffff:192.0.2.56"] {
        let mut c = connect_as(&server, remote(ip), false);
        c.hello().await;
        let msg = message("a@example.com", "b@example.com", "net", "x");
        assert_eq!(
            c.send_mail("a@example.com", &["b@example.com"], &msg)
                .await
                .code,
            250,
            "{ip}"
        );
    }
    // Outside it.
    let mut c = connect_as(&server, remote("198.51.100.1"), false);
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 530).await;
}

#[tokio::test]
async fn without_users_a_remote_client_is_denied() {
    let mut relay = Relay::bind(|b| b.allow_from("192.0.2.0/24".parse().unwrap())).await;
    let server = Arc::new(relay.server.take().unwrap());
    let mut c = connect_as(&server, remote("198.51.100.1"), false);
    c.hello().await;
    let a = c.expect("MAIL FROM:<a@example.com>", 550).await;
    assert_eq!(a.status(), "5.7.1");
    // Loopback still relays (no users file).
    let mut c = connect_as(&server, remote("::1"), false);
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
}

#[tokio::test]
async fn a_user_sends_only_as_its_allowed_senders() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[
            ("printer", "pw", &["*@example.com", "scans@example.org"]),
            ("any", "pw", &[]),
        ],
    );
    let relay = Relay::start(|b| b.users_file(&users)).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.auth_plain("printer", "pw").await;
    for ok in ["scanner@example.com", "SCANS@example.org"] {
        c.expect(&format!("MAIL FROM:<{ok}>"), 250).await;
        c.expect("RSET", 250).await;
    }
    for refused in [
        "ceo@other.test",
        "x@sub.example.com",
        "other@example.org",
        "",
    ] {
        let a = c.expect(&format!("MAIL FROM:<{refused}>"), 553).await;
        assert_eq!(a.text(), "5.7.1 Sender address not allowed for this user");
    }
    // The From and Sender fields are held to the same patterns.
    let forged = message("CEO <ceo@other.test>", "b@example.net", "forged", "x");
    let a = c
        .send_mail("scanner@example.com", &["b@example.net"], &forged)
        .await;
    assert_eq!((a.code, a.status()), (550, "5.7.1"), "{a:?}");
    let sender = format!(
        "Sender: ceo@other.test\r\n{}",
        message("scanner@example.com", "b@example.net", "sender", "x")
    );
    let a = c
        .send_mail("scanner@example.com", &["b@example.net"], &sender)
        .await;
    assert_eq!(a.code, 550);
    let fine = message(
        "Scanner <scanner@example.com>",
        "b@example.net",
        "fine",
        "x",
    );
    assert_eq!(
        c.send_mail("scanner@example.com", &["b@example.net"], &fine)
            .await
            .code,
        250
    );
    assert_eq!(relay.spool.count(), 1);

    // A user without patterns may send as anyone.
    let mut c = relay.client().await;
    c.hello().await;
    c.auth_plain("any", "pw").await;
    let msg = message("ceo@other.test", "b@example.net", "anyone", "x");
    assert_eq!(
        c.send_mail("ceo@other.test", &["b@example.net"], &msg)
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn a_changed_users_file_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let relay = Relay::start(|b| b.users_file(&users)).await;
    let mut c = relay.client().await;
    c.hello().await;
    assert_eq!(c.auth_plain("carol", "new").await.code, 535);
    users_file(dir.path(), &[("carol", "new", &[])]);
    let mut c = relay.client().await;
    c.hello().await;
    assert_eq!(c.auth_plain("carol", "new").await.code, 235);
    outbound::relay::remove_user(&users, "alice").unwrap();
    let mut c = relay.client().await;
    c.hello().await;
    assert_eq!(c.auth_plain("alice", "pw").await.code, 535);
}
