//! Nothing panics on any input: thousands of random byte streams (command fragments, dots,
//! bare CR and LF, BDAT sizes, AUTH exchanges, random bytes), each a whole session, with a
//! panic hook counting panics in the relay's tasks. Deterministic (a fixed seed), so a
//! failure can be replayed; `RELAY_FUZZ_ITERATIONS` runs more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outbound::relay::Limits;
use relay_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&[u8]] = &[
    b"EHLO fuzz\r\n",
    b"HELO fuzz\r\n",
    b"MAIL FROM:<a@example.com>\r\n",
    b"MAIL FROM:<a@example.com> SIZE=99999999999999999999999\r\n",
    b"MAIL FROM:<\xff\xfe@\xc3>\r\n",
    b"MAIL FROM:<> BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<b@example.com>\r\n",
    b"RCPT TO:<\"q\\\"x\"@[127.0.0.1]>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 184467440737095516160\r\n",
    b"BDAT -1\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AHUAcA==\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH LOGIN dQ==\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"*\r\n",
    b"=\r\n",
    b"dXNlcg==\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"..\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\r",
    b"\n",
    b"\r\n",
    b".",
    b"\0",
    b"Subject: fuzz\r\n\r\n",
    b"Message-ID: <x@y>\r\nFrom: a@example.com\r\n",
    b"From: =?utf-8?q?=C3=A9?= <\xff@x>\r\n",
    b"VRFY x\r\nEXPN y\r\nHELP\r\nETRN z\r\nATRN a,b\r\nBURL u LAST\r\nLHLO l\r\n",
];

fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..(1 + rng.below(24)) {
        match rng.below(10) {
            0 => {
                let n = rng.below(64);
                out.extend((0..n).map(|_| rng.next() as u8));
            }
            1 => out.extend(std::iter::repeat_n(b'x', rng.below(5000))),
            _ => out.extend_from_slice(PIECES[rng.below(PIECES.len())]),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_never_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("u", "p", &["*@example.com"])]);
    let (cert, key, _) = certificate(dir.path());
    let limits = Limits {
        max_message_size: 4096,
        max_recipients: 3,
        command_timeout: Duration::from_millis(300),
        data_timeout: Duration::from_millis(300),
        ..test_limits()
    };
    let mut relay =
        Relay::bind(|b| b.users_file(&users).tls_files(&cert, &key).limits(limits)).await;
    let server = Arc::new(relay.server.take().unwrap());
    let iterations: usize = std::env::var("RELAY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let mut rng = Rng(0x005e_ed0f_5eed);
    for i in 0..iterations {
        let input = stream(&mut rng);
        // Loopback (AUTH offered in clear) or remote (not) clients, plain or implicit TLS
        // (which then sees garbage for a handshake).
        let client = match i % 5 {
            0 => remote("203.0.113.9"),
            _ => remote("127.0.0.1"),
        };
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let session = {
            let server = server.clone();
            tokio::spawn(async move { server.serve_connection(theirs, client, i % 17 == 0).await })
        };
        let (mut read, mut write) = tokio::io::split(&mut ours);
        let reader = async {
            let mut sink = vec![0u8; 8192];
            while let Ok(n) = read.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let writer = async {
            let _ = write.write_all(&input).await;
            let _ = write.shutdown().await;
        };
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(reader, writer);
            session.await
        })
        .await;
        let outcome = done.unwrap_or_else(|_| {
            panic!("session {i} hung on {:?}", String::from_utf8_lossy(&input))
        });
        assert!(
            outcome.is_ok(),
            "session {i} panicked on {:?}",
            String::from_utf8_lossy(&input)
        );
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    // Still serving after all that (from another loopback address: 127.0.0.1 may well be
    // locked out by now).
    let mut c = connect_as(&server, remote("127.0.0.2"), false);
    c.hello().await;
    assert_eq!(c.auth_plain("u", "p").await.code, 235);
    let msg = message("a@example.com", "b@example.com", "after", "still here");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
}
