//! 500 messages through one pooled transport (cap 3) against the real Postfix on 587
//! (STARTTLS + AUTH PLAIN), all sent concurrently.
//!
//! What is measured, and where:
//! - delivered exactly once: every Message-ID appears in exactly one Maildir file;
//! - at most 3 connections at once, *on the server*: Postfix's maillog lists each smtpd
//!   session (`connect from` .. `disconnect from`, per process id) and the queue ids it
//!   created; cleanup's `message-id=` lines tie those to this test's messages, so only this
//!   test's sessions count even when other tests use the server at the same time. The overlap
//!   is computed in log order;
//! - pipelining, *on the wire*: the transport's [`WireStats`](outbound::smtp::WireStats)
//!   count command lines and the network writes that carried them. Without pipelining every
//!   write carries one command; here `MAIL FROM`, `RCPT TO` and `DATA` share one write, so the
//!   average is well above 1 and the maximum at least 3. (Postfix does not log pipelining.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::smtp::{Credentials, SmtpTransport, TlsMode};
use outbound::{Message, Transport};
use outbound_testkit::{max_overlap, unique, Maildir, Maillog, TestEnv};

const MESSAGES: usize = 500;
const CAP: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_messages_through_a_pool_of_three() {
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let transport = Arc::new(
        SmtpTransport::builder(env.host())
            .port(env.port_submission())
            .tls(TlsMode::StartTls)
            .ca_file(env.ca_file())
            .credentials(Credentials::password(env.user(), env.password()))
            .pool_size(CAP)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let run = unique("pool");
    let mut ids = Vec::with_capacity(MESSAGES);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let id = format!("{run}-{i}@{}", env.domain());
        ids.push(format!("<{id}>"));
        let msg = Message::builder()
            .from(env.user())
            .to(format!("bob@{}", env.domain()))
            .subject(format!("pool {i}"))
            .text(format!("message {i} of {MESSAGES}\n{}", "x".repeat(1000)))
            .message_id(id)
            .build()
            .unwrap();
        let t = transport.clone();
        tasks.spawn(async move { t.send(&msg).await });
    }
    let mut receipts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        receipts.push(r.unwrap().unwrap_or_else(|e| panic!("a send failed: {e}")));
    }
    let send_time = started.elapsed();
    transport.close().await;
    let stats = transport.stats();
    println!(
        "{MESSAGES} messages accepted in {:.2} s ({:.0}/s); {stats}",
        send_time.as_secs_f64(),
        MESSAGES as f64 / send_time.as_secs_f64()
    );

    // Every message accepted once, with its own queue id.
    assert_eq!(receipts.len(), MESSAGES);
    let qids: HashSet<&str> = receipts
        .iter()
        .map(|r| r.provider_id.as_deref().unwrap())
        .collect();
    assert_eq!(qids.len(), MESSAGES, "distinct queue ids");
    assert!(receipts.iter().all(|r| r.attempts == 1));

    // Delivered exactly once.
    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(&ids, Duration::from_secs(180));
    for id in &ids {
        assert_eq!(
            files[id].len(),
            1,
            "{id} delivered {} times",
            files[id].len()
        );
    }
    println!(
        "all {MESSAGES} in the Maildir after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Client side: never more than CAP open; commands pipelined.
    assert!(stats.max_open_connections <= CAP, "{stats}");
    assert_eq!(
        stats.open_connections, 0,
        "close() closed the idle ones: {stats}"
    );
    assert_eq!(stats.transactions, MESSAGES as u64);
    assert!(stats.max_commands_per_write >= 3, "{stats}");
    assert!(
        stats.commands_per_write() > 1.5,
        "MAIL+RCPT+DATA share a write: {stats}"
    );

    // Server side: the sessions that carried this test's messages never overlapped more than
    // CAP, and together they carried all of them.
    let mine: HashSet<&String> = ids.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let qid_to_mid = log.message_ids();
        let sessions = log.sessions();
        let ours: Vec<_> = sessions
            .iter()
            .filter(|s| {
                s.queue_ids
                    .iter()
                    .any(|q| qid_to_mid.get(q).is_some_and(|m| mine.contains(m)))
            })
            .collect();
        let carried: usize = ours
            .iter()
            .map(|s| {
                s.queue_ids
                    .iter()
                    .filter(|q| qid_to_mid.get(*q).is_some_and(|m| mine.contains(m)))
                    .count()
            })
            .sum();
        let all_closed = ours.iter().all(|s| s.disconnect_line.is_some());
        if carried == MESSAGES && all_closed {
            let overlap = max_overlap(&ours);
            println!(
                "server saw {} sessions for this test, at most {overlap} at once",
                ours.len()
            );
            assert!(
                overlap <= CAP,
                "Postfix saw {overlap} concurrent connections"
            );
            assert!(overlap >= 1);
            assert_eq!(ours.len() as u64, stats.connections_opened);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the maillog shows {carried} of {MESSAGES} messages (all sessions closed: {all_closed})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
