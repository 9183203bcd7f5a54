//! CHUNKING (BDAT, RFC 3030): chunks streamed to the spool, every chunk's octets taken off the
//! connection even when refused, the limits, and Outbound's own SMTP client (which pipelines
//! BDAT transactions) against the relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use outbound::relay::Limits;
use outbound::smtp::{Credentials, SmtpTransport, TlsMode};
use outbound::{Message, Transport};
use relay_support::*;

fn bdat(size_and_flag: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("BDAT {size_and_flag}\r\n").into_bytes();
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn chunks_make_one_message() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    let one = b"Subject: chunked\r\nMessage-ID: <c@x>\r\n";
    let two = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody with\r\n.a dot line\r\n";
    c.send(bdat(&one.len().to_string(), one)).await;
    let a = c.reply().await;
    assert_eq!(a.text(), format!("2.0.0 {} octets received", one.len()));
    c.send(bdat(&format!("{} LAST", two.len()), two)).await;
    let a = c.reply().await;
    assert_eq!((a.code, a.text()), (250, "2.0.0 Ok: queued as T00001"));
    let m = &relay.spool.messages()[0];
    assert_eq!(m.client_bytes(), [&one[..], &two[..]].concat());
    // BDAT 0 LAST ends an empty-so-far message too; a whole message in one chunk.
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    let msg = b"Subject: one chunk\r\n\r\nx\r\n";
    c.send(bdat(&msg.len().to_string(), msg)).await;
    assert_eq!(c.reply().await.code, 250);
    c.expect("BDAT 0 LAST", 250).await;
    assert_eq!(relay.spool.count(), 2);
}

#[tokio::test]
async fn refused_chunks_are_still_read_off_the_connection() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    // No transaction: 503, and the chunk's "commands" are not run.
    let inner = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n";
    c.send(bdat(&format!("{} LAST", inner.len()), inner)).await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (503, "5.5.1"));
    c.expect("NOOP", 250).await;
    // MAIL without an accepted recipient: 554.
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.send(bdat(&inner.len().to_string(), inner)).await;
    assert_eq!(c.reply().await.code, 554);
    c.expect("NOOP", 250).await;
    // DATA in the middle of a BDAT transaction.
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.send(bdat("3", b"abc")).await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.expect("DATA", 503).await.status(), "5.5.1");
    c.expect("RSET", 250).await;
    assert_eq!(relay.spool.aborted.load(Ordering::SeqCst), 1);
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn an_unreadable_bdat_size_ends_the_session() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    // smtp-proto would read this size as 999.
    let a = c.cmd("BDAT 99999999999999999999999 LAST").await;
    assert_eq!((a.code, a.status()), (501, "5.5.4"));
    assert!(c.is_closed().await);
    let mut c = relay.client().await;
    c.hello().await;
    let a = c.cmd("BDAT x5 LAST").await;
    assert_eq!((a.code, a.status()), (501, "5.5.4"));
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn chunk_limits_and_failures() {
    let limits = Limits {
        max_message_size: 100,
        ..test_limits()
    };
    let relay = Relay::start(|b| b.limits(limits)).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.send(bdat("60", &[b'x'; 60])).await;
    assert_eq!(c.reply().await.code, 250);
    // The chunk that passes the limit ends the transaction.
    c.send(bdat("60", &[b'x'; 60])).await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (552, "5.3.4"));
    c.send(bdat("2 LAST", b"\r\n")).await;
    assert_eq!(c.reply().await.code, 503);
    // Bare LF across chunks; a long line.
    for (one, two) in [
        (&b"Subject: x\r\n\r\na"[..], &b"\nb\r\n"[..]),
        (b"a\r", b"b\r\n"),
    ] {
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        c.send(bdat(&one.len().to_string(), one)).await;
        assert_eq!(c.reply().await.code, 250);
        c.send(bdat(&format!("{} LAST", two.len()), two)).await;
        let a = c.reply().await;
        assert_eq!((a.code, a.status()), (550, "5.6.0"));
    }
    // The spool failing mid-transaction answers the chunk with its 4xx.
    relay.spool.fail(Failure::WriteFullAfter(1));
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    // (Written once the header section is complete: the relay adds its fields before it.)
    c.send(bdat("18", b"Subject: y\r\n\r\nyyyy")).await;
    let a = c.reply().await;
    assert_eq!((a.code, a.status()), (452, "4.3.1"));
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn no_chunking_when_turned_off() {
    let relay = Relay::start(|b| b.chunking(false)).await;
    let mut c = relay.client().await;
    assert!(!c.hello().await.has_line("CHUNKING"));
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.send(bdat("4 LAST", b"abcd")).await;
    assert_eq!(c.reply().await.code, 502);
    // The transaction is still there for DATA.
    c.expect("DATA", 354).await;
}

fn outbound_message(n: usize) -> Message {
    Message::builder()
        .from("app@example.com")
        .to(format!("user{n}@example.com"))
        .subject(format!("through the relay {n}"))
        .text(format!("message {n}\r\n.a line with a dot\r\n"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn outbounds_own_client_with_data_and_with_bdat() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("app", "app-password", &["*@example.com"])]);
    let relay = Relay::start(|b| b.users_file(&users)).await;
    for chunking in [false, true] {
        let transport = std::sync::Arc::new(
            SmtpTransport::builder("127.0.0.1")
                .port(relay.addr.port())
                .tls(TlsMode::None)
                .credentials(Credentials::password("app", "app-password"))
                .chunking(chunking)
                .pool_size(1)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        );
        let sends = (0..6).map(|n| {
            let t = transport.clone();
            async move { t.send(&outbound_message(n)).await }
        });
        for result in futures_join_all(sends).await {
            let receipt = result.expect("accepted by the relay");
            assert_eq!(receipt.accepted.len(), 1);
        }
    }
    let stored = relay.spool.messages();
    assert_eq!(stored.len(), 12);
    for m in &stored {
        assert_eq!(m.envelope.user.as_ref().unwrap().name, "app");
        assert!(m.text().contains("\r\n.a line with a dot\r\n"));
        assert!(!m.facts.added_message_id);
    }
}

/// Runs the futures concurrently (no futures crate needed).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (n, f) in futures.into_iter().enumerate() {
        set.spawn(async move { (n, f.await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, o)| o).collect()
}

#[tokio::test]
async fn a_session_ending_mid_bdat_gives_the_message_up() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.send(bdat("5", b"abcde")).await;
    assert_eq!(c.reply().await.code, 250);
    // A BDAT whose size is unreadable ends the session; the message is aborted.
    assert_eq!(c.cmd("BDAT five LAST").await.code, 501);
    assert!(c.is_closed().await);
    for _ in 0..100 {
        if relay.spool.aborted.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(relay.spool.aborted.load(Ordering::SeqCst), 1);
    assert_eq!(relay.spool.count(), 0);
}
