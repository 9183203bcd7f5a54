//! SMTP smuggling: no shape of a false end of data splits a message, through DATA or BDAT;
//! a message holding a bare CR or LF is refused with `550 5.6.0` after its real end; what
//! follows the real end is read as commands (PIPELINING), and only that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use relay_support::*;

/// Every false end-of-data known (SEC Consult's and Postfix's lists): bare LF or bare CR
/// around the dot, in every combination.
const SHAPES: &[&[u8]] = &[
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r.\n",
    b"\n\n.\n\n",
    b"\r\r.\r\r",
    b"\r\n\n.\r\n",
    b"\r\r\n.\n",
    b"\n\r.\r\n",
];

fn smuggled(shape: &[u8]) -> Vec<u8> {
    let mut data =
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: outer\r\n\r\nouter body".to_vec();
    data.extend_from_slice(shape);
    data.extend_from_slice(
        b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n\
          From: ceo@example.com\r\nSubject: smuggled\r\n\r\nsmuggled\r\n",
    );
    data
}

#[tokio::test]
async fn no_shape_splits_a_message_through_data() {
    let relay = Relay::start(|b| b).await;
    for shape in SHAPES {
        let mut c = relay.client().await;
        c.hello().await;
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        c.expect("DATA", 354).await;
        let mut data = smuggled(shape);
        data.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        c.send(&data).await;
        let a = c.reply().await;
        assert_eq!(
            (a.code, a.status()),
            (550, "5.6.0"),
            "shape {shape:?} was answered {a:?}"
        );
        // The next reply is the NOOP's: the smuggled MAIL/RCPT/DATA were message text.
        let a = c.reply().await;
        assert_eq!(
            (a.code, a.status()),
            (250, "2.0.0"),
            "shape {shape:?}: {a:?}"
        );
        c.expect("QUIT", 221).await;
    }
    assert_eq!(relay.spool.count(), 0, "a smuggling attempt was stored");
    assert_eq!(
        relay.spool.opened.load(std::sync::atomic::Ordering::SeqCst),
        SHAPES.len()
    );
}

#[tokio::test]
async fn no_shape_ends_data_even_without_a_real_end() {
    // Without the real CRLF.CRLF the relay keeps waiting for the end: no reply at all.
    let relay = Relay::start(|b| {
        b.limits(outbound::relay::Limits {
            data_timeout: std::time::Duration::from_millis(400),
            ..test_limits()
        })
    })
    .await;
    for shape in SHAPES {
        let mut c = relay.client().await;
        c.hello().await;
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        c.expect("DATA", 354).await;
        c.send(smuggled(shape)).await;
        let a = c.reply().await;
        assert_eq!(
            (a.code, a.status()),
            (421, "4.4.2"),
            "shape {shape:?}: {a:?}"
        );
    }
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn no_shape_splits_a_message_through_bdat() {
    let relay = Relay::start(|b| b).await;
    for shape in SHAPES {
        let mut c = relay.client().await;
        c.hello().await;
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        let mut body = smuggled(shape);
        body.extend_from_slice(b"\r\n.\r\n");
        let mut data = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
        data.extend_from_slice(&body);
        data.extend_from_slice(b"NOOP\r\n");
        c.send(&data).await;
        let a = c.reply().await;
        assert_eq!(
            (a.code, a.status()),
            (550, "5.6.0"),
            "shape {shape:?}: {a:?}"
        );
        assert_eq!(c.reply().await.code, 250);
    }
    assert_eq!(relay.spool.count(), 0);
}

#[tokio::test]
async fn a_clean_message_with_dots_and_what_follows_its_end() {
    let relay = Relay::start(|b| b).await;
    let mut c = relay.client().await;
    c.hello().await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.expect("DATA", 354).await;
    // Lines of dots (stuffed), then the real end and a real second transaction.
    c.send(
        "Subject: dots\r\n\r\n..\r\n...\r\n..x\r\n\r\n.\r\n\
         MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n",
    )
    .await;
    for code in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.code, code);
    }
    c.send("Subject: second\r\n\r\nsecond\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    let stored = relay.spool.messages();
    assert_eq!(stored.len(), 2, "two real transactions, two messages");
    assert!(stored[0]
        .client_bytes()
        .ends_with(b"\r\n\r\n.\r\n..\r\n.x\r\n\r\n"));
    assert_eq!(stored[1].envelope.mail_from, "c@example.com");
}

#[tokio::test]
async fn bare_cr_or_lf_anywhere_is_refused() {
    let relay = Relay::start(|b| b).await;
    for body in [
        &b"Subject: x\nTo: y\r\n\r\nbody\r\n"[..],
        b"Subject: x\r\n\r\nline\rmore\r\n",
        b"Subject: x\r\n\r\nends in lf\n",
        b"Subject: x\r\n\r\nends in cr\r\r\n",
    ] {
        let mut c = relay.client().await;
        c.hello().await;
        c.expect("MAIL FROM:<a@example.com>", 250).await;
        c.expect("RCPT TO:<b@example.com>", 250).await;
        c.expect("DATA", 354).await;
        c.send(body).await;
        c.send("\r\n.\r\n").await;
        let a = c.reply().await;
        assert_eq!((a.code, a.status()), (550, "5.6.0"), "{body:?}");
    }
    assert_eq!(relay.spool.count(), 0);
}
