//! The relay's SMTP session against a scripted client on loopback: the state machine, every
//! refusal code, the limits, PIPELINING, and the spool seam (a test double) never answered
//! `250` unless it kept the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use outbound::relay::{Limits, RelayServer, Reply};
use relay_support::*;

#[tokio::test]
async fn a_message_goes_through_with_its_envelope_and_bytes_intact() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    let ehlo = c.hello().await;
    for ext in [
        "PIPELINING",
        "SIZE 36700160",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(ehlo.has_line(ext), "{ext} missing from {:?}", ehlo.lines);
    }
    assert!(ehlo.lines[0].starts_with("250-relay.test greets client.test"));
    // No users file, no certificate: neither AUTH nor STARTTLS.
    assert!(!ehlo
        .lines
        .iter()
        .any(|l| l.contains("AUTH") || l.contains("STARTTLS")));

    let msg = message(
        "a@example.com",
        "b@example.com",
        "one",
        "Hello\r\n.leading dot\r\n..two",
    );
    let answer = c
        .send_mail("a@example.com", &["b@example.com", "c@example.org"], &msg)
        .await;
    assert_eq!(answer.code, 250, "{answer:?}");
    assert_eq!(answer.text(), "2.0.0 Ok: queued as T00001");
    c.expect("QUIT", 221).await;
    assert!(c.is_closed().await);

    let stored = relay.spool.messages();
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(m.envelope.mail_from, "a@example.com");
    assert_eq!(m.envelope.rcpt_to, ["b@example.com", "c@example.org"]);
    assert_eq!(m.envelope.helo, "client.test");
    assert!(m.envelope.client.ip().is_loopback());
    assert!(!m.envelope.tls && m.envelope.user.is_none());
    assert!(!m.facts.added_message_id && !m.facts.added_date);
    assert_eq!(m.facts.message_id, "<one@client.test>");
    assert_eq!(m.client_bytes(), msg.as_bytes());
    let text = m.text();
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby relay.test (outbound relay) with ESMTP id T00001;\r\n\t"),
        "{text}"
    );
}

#[tokio::test]
async fn message_id_and_date_are_added_when_the_client_left_them_out() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let msg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: bare\r\n\r\nbody\r\n";
    let answer = c.send_mail("a@example.com", &["b@example.com"], msg).await;
    assert_eq!(answer.code, 250);
    let m = &relay.spool.messages()[0];
    assert!(m.facts.added_message_id && m.facts.added_date);
    assert!(
        m.facts.message_id.ends_with("@relay.test>"),
        "{}",
        m.facts.message_id
    );
    let text = m.text();
    assert!(
        text.contains(&format!("\r\nMessage-ID: {}\r\nDate: ", m.facts.message_id)),
        "{text}"
    );
    assert_eq!(m.client_bytes(), msg.as_bytes());
}

#[tokio::test]
async fn commands_out_of_sequence_are_refused_with_their_codes() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    assert_eq!(c.reply().await.code, 220);
    let a = c.expect("MAIL FROM:<a@example.com>", 503).await;
    assert_eq!(a.status(), "5.5.1");
    c.expect("EHLO client.test", 250).await;
    assert_eq!(
        c.expect("RCPT TO:<b@example.com>", 503).await.status(),
        "5.5.1"
    );
    assert_eq!(c.expect("DATA", 503).await.status(), "5.5.1");
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com>", 503).await.text(),
        "5.5.1 Nested MAIL command"
    );
    assert_eq!(
        c.expect("DATA", 554).await.text(),
        "5.5.1 No valid recipients"
    );
    c.expect("RSET", 250).await;
    c.expect("RCPT TO:<b@example.com>", 503).await;
    assert_eq!(c.expect("NOOP", 250).await.status(), "2.0.0");
    assert_eq!(c.expect("VRFY someone", 252).await.status(), "2.5.0");
    assert_eq!(c.expect("EXPN list", 502).await.status(), "5.5.1");
    assert_eq!(c.expect("HELP", 214).await.status(), "2.0.0");
    assert_eq!(c.expect("FOO bar", 500).await.status(), "5.5.2");
    assert_eq!(c.expect("ETRN example.com", 502).await.status(), "5.5.1");
    c.expect("QUIT", 221).await;
    assert!(c.is_closed().await);
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn syntax_and_parameters() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    assert_eq!(
        c.expect("MAIL FROM:a@example.com", 501).await.status(),
        "5.5.4"
    );
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com> RET=FULL", 555)
            .await
            .status(),
        "5.5.4"
    );
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com> BODY=BINARYMIME", 555)
            .await
            .status(),
        "5.5.4"
    );
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com> ENVID=x", 555)
            .await
            .status(),
        "5.5.4"
    );
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com> FOO=bar", 555)
            .await
            .status(),
        "5.5.4"
    );
    c.expect("MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=100", 250)
        .await;
    assert_eq!(c.expect("RCPT TO:<>", 501).await.status(), "5.1.3");
    assert_eq!(
        c.expect("RCPT TO:<b@example.com> NOTIFY=NEVER", 555)
            .await
            .status(),
        "5.5.4"
    );
    c.expect("RCPT TO:<b@example.com>", 250).await;
    // The null sender is a valid envelope sender (bounces).
    c.expect("RSET", 250).await;
    c.expect("MAIL FROM:<>", 250).await;
}

#[tokio::test]
async fn utf8_addresses_need_smtputf8() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.expect("MAIL FROM:<jöran@example.com>", 553).await;
    assert_eq!(a.status(), "5.6.7");
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    assert_eq!(
        c.expect("RCPT TO:<jöran@example.com>", 553).await.status(),
        "5.6.7"
    );
    c.expect("RSET", 250).await;
    c.expect("MAIL FROM:<jöran@example.com> SMTPUTF8", 250)
        .await;
    c.expect("RCPT TO:<ünï@exämple.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send("Subject: ü\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    let m = &relay.spool.messages()[0];
    assert!(m.envelope.smtputf8);
    assert_eq!(m.envelope.rcpt_to, ["ünï@exämple.com"]);
}

#[tokio::test]
async fn helo_sessions_take_no_parameters() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.reply().await;
    let a = c.expect("HELO old.client", 250).await;
    assert_eq!(a.lines, ["250 relay.test"]);
    assert_eq!(
        c.expect("MAIL FROM:<a@example.com> SIZE=10", 555)
            .await
            .status(),
        "5.5.4"
    );
    let msg = message("a@example.com", "b@example.com", "helo", "x");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
    assert!(relay.spool.messages()[0].text().contains("with SMTP id"));
}

#[tokio::test]
async fn size_limit_in_mail_and_in_data() {
    let limits = Limits {
        max_message_size: 1000,
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    let mut c = relay.client().await;
    assert!(c.hello().await.has_line("SIZE 1000"));
    let a = c.expect("MAIL FROM:<a@example.com> SIZE=1001", 552).await;
    assert_eq!(a.status(), "5.3.4");
    let big = message("a@example.com", "b@example.com", "big", &"x".repeat(990));
    let a = c.send_mail("a@example.com", &["b@example.com"], &big).await;
    assert_eq!((a.code, a.status()), (552, "5.3.4"));
    assert_eq!(relay.spool.count(), 0);
    assert_eq!(relay.spool.aborted.load(Ordering::SeqCst), 1);
    // The session goes on, and a message within the limit goes through.
    let small = message("a@example.com", "b@example.com", "small", "x");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &small)
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn too_many_recipients() {
    let limits = Limits {
        max_recipients: 3,
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    for n in 0..3 {
        c.expect(&format!("RCPT TO:<r{n}@example.com>"), 250).await;
    }
    let a = c.expect("RCPT TO:<r3@example.com>", 452).await;
    assert_eq!(a.text(), "4.5.3 Too many recipients");
    c.expect("DATA", 354).await;
    c.send("Subject: x\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(relay.spool.messages()[0].envelope.rcpt_to.len(), 3);
}

#[tokio::test]
async fn line_lengths() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.cmd(&format!("NOOP {}", "x".repeat(3000))).await;
    assert_eq!((a.code, a.status()), (500, "5.5.2"));
    c.expect("NOOP", 250).await;
    let long = message("a@example.com", "b@example.com", "long", &"y".repeat(999));
    let a = c
        .send_mail("a@example.com", &["b@example.com"], &long)
        .await;
    assert_eq!((a.code, a.status()), (550, "5.6.0"), "{a:?}");
    let ok = message("a@example.com", "b@example.com", "ok", &"y".repeat(998));
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &ok)
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn bare_newlines_in_commands_are_refused() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.send("MAIL FROM:<a@example.com>\n").await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (500, "5.5.2"));
    c.send("NOOP\rRSET\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    c.expect("RCPT TO:<b@example.com>", 503).await;
}

#[tokio::test]
async fn connection_count() {
    let limits = Limits {
        max_connections: 2,
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    let mut first = relay.client().await;
    first.reply().await;
    let mut second = relay.client().await;
    second.reply().await;
    let mut third = relay.client().await;
    let a = third.reply().await;
    assert_eq!(a.code, 421);
    assert_eq!(
        a.text(),
        "4.7.0 relay.test Too many connections, try again later"
    );
    assert!(third.is_closed().await);
    first.expect("QUIT", 221).await;
    assert!(first.is_closed().await);
    // A slot is free again.
    let mut fourth = relay.client().await;
    for _ in 0..50 {
        let a = fourth.reply().await;
        if a.code == 220 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        fourth = relay.client().await;
    }
    panic!("no slot came free");
}

#[tokio::test]
async fn per_phase_timeouts() {
    let limits = Limits {
        command_timeout: Duration::from_millis(300),
        data_timeout: Duration::from_millis(300),
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    // Waiting for a command.
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.reply().await;
    assert_eq!(a.code, 421);
    assert_eq!(a.text(), "4.4.2 relay.test Timeout, closing connection");
    assert!(c.is_closed().await);
    // Within DATA: the message is dropped.
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send("Subject: half\r\n\r\nhalf a mess").await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (421, "4.4.2"));
    assert!(c.is_closed().await);
    assert_eq!(relay.spool.count(), 0);
    assert_eq!(relay.spool.aborted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let limits = Limits {
        max_errors: 3,
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("GET / HTTP/1.1", 500).await;
    c.expect("Host: relay.test", 500).await;
    c.send("\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (421, "4.7.0"));
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn pipelined_transactions_get_their_replies_in_order() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n").await;
    for (code, status) in [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (501, "5.1.3"),
        (250, "2.1.5"),
    ] {
        let a = c.reply().await;
        assert_eq!((a.code, a.status()), (code, status));
    }
    assert_eq!(c.reply().await.code, 354);
    // The end of one message and the next transaction in one write.
    c.send("Subject: 1\r\n\r\none\r\n.\r\nMAIL FROM:<d@example.com>\r\nRCPT TO:<e@example.com>\r\nDATA\r\n").await;
    for code in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.code, code);
    }
    c.send("Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply().await.code, 221);
    let stored = relay.spool.messages();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].envelope.rcpt_to,
        ["b@example.com", "c@example.com"]
    );
    assert!(stored[0].client_bytes().ends_with(b"\r\n\r\none\r\n"));
    assert_eq!(stored[1].envelope.mail_from, "d@example.com");
}

#[tokio::test]
async fn input_after_a_refused_data_closes_the_connection() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    // No recipient: DATA is refused, and the "message" behind it must not become commands.
    c.send("DATA\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nx\r\n.\r\n").await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (554, "5.5.1"));
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (421, "4.5.0"));
    assert!(c.is_closed().await);
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn the_spool_failing_is_never_answered_250() {
    let relay = Relay::start(|b| b).await;
    let msg = message("a@example.com", "b@example.com", "s", "body");
    let cases = [
        (Failure::OpenFull, 452, "4.3.1"),
        (Failure::OpenUnavailable, 451, "4.3.0"),
        (Failure::WriteFullAfter(10), 452, "4.3.1"),
        (Failure::CommitUnavailable, 451, "4.3.0"),
        (
            Failure::CommitRefused(Reply::new(554, "5.7.1", "upstream says no")),
            554,
            "5.7.1",
        ),
        (
            Failure::CommitRefused(Reply::new(250, "2.0.0", "a spool may not say yes this way")),
            451,
            "4.3.0",
        ),
    ];
    for (failure, code, status) in cases {
        relay.spool.fail(failure.clone());
        let mut c = relay.client().await;
        c.hello().await;
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        let a = c.cmd("DATA").await;
        let a = if a.code == 354 {
            c.send(dot_stuff(&msg)).await;
            c.send(".\r\n").await;
            c.reply().await
        } else {
            a
        };
        assert_eq!((a.code, a.status()), (code, status), "{failure:?}: {a:?}");
        // The session is still usable.
        c.expect("NOOP", 250).await;
    }
    assert_eq!(relay.spool.count(), 0);
    relay.spool.fail(Failure::None);
    let mut c = relay.client().await;
    c.hello().await;
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn a_large_message_is_streamed_not_held() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let line = format!("{}\r\n", "z".repeat(76));
    let body: String = line.repeat(5 * 1024 * 1024 / line.len());
    let msg = message("a@example.com", "b@example.com", "large", &body);
    let a = c.send_mail("a@example.com", &["b@example.com"], &msg).await;
    assert_eq!(a.code, 250);
    let m = &relay.spool.messages()[0];
    assert_eq!(m.client_bytes(), msg.as_bytes());
    assert!(m.writes > 10, "{} writes", m.writes);
    assert!(
        m.largest_write <= 192 * 1024,
        "largest write {}",
        m.largest_write
    );
}

#[tokio::test]
async fn shutdown_tells_waiting_sessions_and_stops_accepting() {
    let relay = Relay::start(|b| b).await;
    let addr = relay.addr;
    let mut c = relay.client().await;
    c.hello().await;
    let stopping = tokio::spawn(relay.stop());
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (421, "4.3.2"));
    assert!(c.is_closed().await);
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_non_loopback_listener_needs_users_or_networks() {
    let spool = || std::sync::Arc::new(SharedSpool(TestSpool::new()));
    let err = RelayServer::builder(spool())
        .listen("0.0.0.0:0".parse().unwrap())
        .bind()
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), outbound::ErrorKind::Config);
    assert!(err.to_string().contains("never an open relay"), "{err}");
    assert_eq!(err.setting(), Some("listen"));
    // Allowed networks, or users, make it valid.
    RelayServer::builder(spool())
        .listen("0.0.0.0:0".parse().unwrap())
        .allow_from("10.0.0.0/8".parse().unwrap())
        .bind()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("u", "p", &[])]);
    RelayServer::builder(spool())
        .listen("0.0.0.0:0".parse().unwrap())
        .users_file(&users)
        .bind()
        .await
        .unwrap();
    // The implicit-TLS listener needs a certificate; a malformed users file is refused.
    let err = RelayServer::builder(spool())
        .listen_tls("127.0.0.1:0".parse().unwrap())
        .bind()
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), outbound::ErrorKind::Config);
    std::fs::write(dir.path().join("bad"), "user:not-a-hash\n").unwrap();
    let err = RelayServer::builder(spool())
        .users_file(dir.path().join("bad"))
        .bind()
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), outbound::ErrorKind::Config);
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[tokio::test]
async fn idle_replies_come_quickly() {
    // Replies are held only while more pipelined input is waiting: a lone command is
    // answered at once.
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    let start = Instant::now();
    for _ in 0..20 {
        c.expect("NOOP", 250).await;
    }
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn forms_old_clients_send() {
    // Printers and old clients: a space after the colon, lower case, HELO-era habits, and
    // Outlook's `AUTH=` line (tested with users in relay_auth.rs).
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.reply().await;
    c.expect("ehlo printer", 250).await;
    c.expect("mail from: <scanner@example.com>", 250).await;
    c.expect("rcpt to: <ada@example.net>", 250).await;
    c.expect("RCPT TO:<Bob Smith <bob@example.net>>", 501).await;
    c.expect("data", 354).await;
    c.send("Subject: scan\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    let m = &relay.spool.messages()[0];
    assert_eq!(m.envelope.mail_from, "scanner@example.com");
    assert_eq!(m.envelope.rcpt_to, ["ada@example.net"]);
}
