//! Pipelining across messages on one reused connection (RFC 2920 section 3.1): concurrent
//! sends on a pool of one are queued on its connection, and the next message's MAIL, RCPT and
//! DATA go out in the same write as the previous message's final `.`.
//!
//! What is shown, against the real Postfix and against `testenv/fault_smtpd.py`:
//! - each reply is attributed to its own transaction: a refusal of the second of three
//!   pipelined transactions (at RCPT by Postfix, at the final `.` by the fault server) is the
//!   second message's error, with its own code, and the first and third are delivered;
//! - a connection lost after the second final `.` makes exactly that message Ambiguous; the
//!   third, whose commands were pipelined behind it but whose data never went out, is resent
//!   on a new connection and delivered once;
//! - one round trip per message on a busy reused connection, counted by the transport's
//!   [`WireStats::round_trips`](outbound::smtp::WireStats) (every time a connection waited for
//!   the server after writing), against four in lockstep; and one per message even when sent
//!   one at a time, with `BDAT … LAST` (RFC 3030 CHUNKING, which Postfix offers), and
//!   several BDAT transactions in flight at once when many are queued.
//!
//! Postfix offers CHUNKING, so the Postfix tests run twice: with DATA pipelined behind the
//! previous final `.` (the default) and with `BDAT` (`chunking(true)`). aiosmtpd does not offer
//! CHUNKING: the fault server tests are DATA only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use outbound::smtp::{Credentials, SmtpTransport, TlsMode};
use outbound::{ErrorKind, Message, Receipt, ServerCode, Transport};
use outbound_testkit::{unique, FaultServer, Maildir, TestEnv};

fn postfix(env: &TestEnv, chunking: bool) -> outbound::smtp::SmtpTransportBuilder {
    SmtpTransport::builder(env.host())
        .port(env.port_plain())
        .tls(TlsMode::None)
        .credentials(Credentials::password(env.user(), env.password()))
        .timeout(Duration::from_secs(20))
        .pool_size(1)
        .chunking(chunking)
}

fn message(env: &TestEnv, to: &str, tag: &str) -> (Message, String) {
    let id = format!("{}@{}", unique(tag), env.domain());
    let msg = Message::builder()
        .from(env.user())
        .to(to)
        .subject(format!("pipelining {tag} {id}"))
        .text(format!("{tag}\n{}", "x".repeat(2000)))
        .message_id(id.clone())
        .build()
        .unwrap();
    (msg, format!("<{id}>"))
}

fn smtp_code(err: &outbound::Error) -> (u16, Option<String>) {
    match err.code() {
        Some(ServerCode::Smtp { code, enhanced }) => (*code, enhanced.clone()),
        other => panic!("no SMTP code in {err}: {other:?}"),
    }
}

/// Sends three messages at once on a pool of one: they are queued on its connection in the
/// order polled (`join!` polls its branches in order the first time).
async fn three_at_once(
    t: &SmtpTransport,
    m: &[Message; 3],
) -> [Result<Receipt, outbound::Error>; 3] {
    let (a, b, c) = tokio::join!(t.send(&m[0]), t.send(&m[1]), t.send(&m[2]));
    [a, b, c]
}

#[tokio::test]
async fn postfix_refuses_the_second_of_three_pipelined_transactions() {
    for chunking in [false, true] {
        second_of_three_refused_by_postfix(chunking).await;
    }
}

async fn second_of_three_refused_by_postfix(chunking: bool) {
    let env = TestEnv::load();
    let t = postfix(&env, chunking).build().unwrap();
    // A connection first, so the three go to it in order, pipelined behind each other.
    let (warm, warm_id) = message(&env, &format!("bob@{}", env.domain()), "warm");
    t.send(&warm).await.unwrap();
    let before = t.stats();

    let bob = format!("bob@{}", env.domain());
    let (m1, id1) = message(&env, &bob, "first");
    let (m2, id2) = message(&env, &env.reject_rcpt(), "second");
    let (m3, id3) = message(&env, &bob, "third");
    let [r1, r2, r3] = three_at_once(&t, &[m1, m2, m3]).await;
    let stats = t.stats();
    println!("chunking {chunking}: {stats}");

    let r1 = r1.unwrap();
    let r3 = r3.unwrap();
    assert_ne!(r1.provider_id, r3.provider_id, "each has its own queue id");
    let err = r2.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    let (code, _) = smtp_code(&err);
    assert_eq!(code, 550, "the second's own RCPT refusal: {err}");
    assert!(err.to_string().contains(&env.reject_rcpt()), "{err}");

    // One connection throughout, and the commands really were pipelined behind a final `.`.
    assert_eq!(stats.connections_opened, 1, "{stats}");
    assert_eq!(stats.transactions - before.transactions, 2, "{stats}");
    if chunking {
        // The three BDAT transactions were in flight together (the second and third began
        // with RSET): fewer round trips than messages.
        assert!(stats.round_trips - before.round_trips < 3, "{stats}");
        assert_eq!(stats.commands - before.commands, 3 * 3 + 2, "{stats}");
    } else {
        assert!(
            stats.pipelined_transactions - before.pipelined_transactions >= 1,
            "the second went out behind the first's end of data: {stats}"
        );
    }

    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(
        &[warm_id, id1.clone(), id3.clone()],
        Duration::from_secs(60),
    );
    assert_eq!(files[&id1].len(), 1, "first delivered once");
    assert_eq!(files[&id3].len(), 1, "third delivered once");
    assert!(maildir.files_for(&id2).is_empty(), "second not delivered");
}

#[tokio::test]
async fn one_round_trip_per_message_on_a_busy_reused_connection() {
    const N: usize = 40;
    let env = TestEnv::load();
    let bob = format!("bob@{}", env.domain());
    let mut per_message = Vec::new();
    for pipelining in [true, false] {
        let t = postfix(&env, false).pipelining(pipelining).build().unwrap();
        let (warm, _) = message(&env, &bob, "rt-warm");
        t.send(&warm).await.unwrap();
        let before = t.stats();
        let msgs: Vec<Message> = (0..N)
            .map(|i| message(&env, &bob, &format!("rt-{i}")).0)
            .collect();
        let results = futures_join_all(&t, &msgs).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let after = t.stats();
        assert_eq!(after.connections_opened, 1, "{after}");
        let trips = after.round_trips - before.round_trips;
        let rate = trips as f64 / N as f64;
        println!("pipelining {pipelining}: {trips} round trips for {N} messages ({rate:.2} per message); {after}");
        per_message.push(rate);
        if pipelining {
            // The first one's envelope, then one turn per message (its payload and the next
            // one's commands go out together; their replies come back together).
            assert!(
                trips <= N as u64 + 2,
                "{trips} round trips for {N} messages"
            );
            assert!(
                after.pipelined_transactions - before.pipelined_transactions >= N as u64 - 2,
                "{after}"
            );
        } else {
            // MAIL, RCPT, DATA, the payload: four turns each.
            assert!(
                trips >= 4 * N as u64,
                "{trips} round trips for {N} messages"
            );
            assert_eq!(after.pipelined_transactions, 0, "{after}");
        }
        t.close().await;
    }
    assert!(per_message[0] * 3.0 < per_message[1], "{per_message:?}");

    // BDAT with every message queued at once: several transactions in flight on the one
    // connection (`smtp::lane::BDAT_WINDOW`), each delivered once.
    let t = postfix(&env, true).build().unwrap();
    let (warm, _) = message(&env, &bob, "win-warm");
    t.send(&warm).await.unwrap();
    let before = t.stats();
    let (msgs, ids): (Vec<Message>, Vec<String>) = (0..N)
        .map(|i| message(&env, &bob, &format!("win-{i}")))
        .unzip();
    let results = futures_join_all(&t, &msgs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let after = t.stats();
    t.close().await;
    let trips = after.round_trips - before.round_trips;
    println!("BDAT, {N} at once: {trips} round trips; {after}");
    assert_eq!(after.connections_opened, 1, "{after}");
    assert_eq!(
        after.transactions - before.transactions,
        N as u64,
        "{after}"
    );
    assert!(trips < N as u64, "fewer round trips than messages: {after}");
    let mut maildir = Maildir::new(env.maildir());
    let files = maildir.wait_for(&ids, Duration::from_secs(60));
    for id in &ids {
        assert_eq!(files[id].len(), 1, "{id} delivered once");
    }

    // BDAT: one round trip per message even one at a time (nothing queued to pipeline).
    let t = postfix(&env, true).build().unwrap();
    let (warm, _) = message(&env, &bob, "rt-bdat-warm");
    t.send(&warm).await.unwrap();
    let before = t.stats();
    for i in 0..N {
        let (m, _) = message(&env, &bob, &format!("rt-bdat-{i}"));
        t.send(&m).await.unwrap();
    }
    let after = t.stats();
    let trips = after.round_trips - before.round_trips;
    println!("BDAT, one at a time: {trips} round trips for {N} messages; {after}");
    assert_eq!(after.connections_opened, 1, "{after}");
    assert_eq!(trips, N as u64, "one round trip per message: {after}");
    assert_eq!(
        after.commands - before.commands,
        3 * N as u64,
        "MAIL, RCPT, BDAT: {after}"
    );
    assert_eq!(
        after.command_writes - before.command_writes,
        N as u64,
        "{after}"
    );
}

/// Every message sent at once on `t`.
async fn futures_join_all(
    t: &SmtpTransport,
    msgs: &[Message],
) -> Vec<Result<Receipt, outbound::Error>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in msgs.iter().enumerate() {
        let t = t.clone();
        let m = m.clone();
        set.spawn(async move { (i, t.send(&m).await) });
    }
    let mut out: Vec<Option<Result<Receipt, outbound::Error>>> =
        (0..msgs.len()).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.unwrap();
        out[i] = Some(r);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn fault(server: &FaultServer) -> SmtpTransport {
    SmtpTransport::builder("127.0.0.1")
        .port(server.port)
        .tls(TlsMode::None)
        .timeout(Duration::from_secs(10))
        .pool_size(1)
        .build()
        .unwrap()
}

fn fault_message(tag: &str) -> Message {
    Message::builder()
        .from("app@example.test")
        .to("bob@example.test")
        .subject(format!("pipelined {tag}"))
        .text(format!("body of {tag}"))
        .build()
        .unwrap()
}

/// The subjects of the messages the fault server received, in order, with their connection.
fn received(server: &FaultServer) -> Vec<(u64, String)> {
    use std::io::Read;
    server
        .events()
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| {
            let b64 = e["data_b64"].as_str().unwrap();
            let bytes = base64_decode(b64);
            let mut text = String::new();
            bytes.as_slice().read_to_string(&mut text).unwrap();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string();
            (e["conn"].as_u64().unwrap(), subject)
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = T.iter().position(|&t| t == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn a_refused_second_transaction_gets_its_own_code_and_the_others_are_delivered() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "reject-second-data", &[]);
    let t = fault(&server);
    let tags = ["one", "two", "three"];
    let msgs = tags.map(fault_message);
    let results = three_at_once(&t, &msgs).await;
    let stats = t.stats();
    println!("{stats}");
    let got = received(&server);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|(conn, _)| *conn == 1),
        "one connection: {got:?}"
    );
    // Whichever the server saw second is the one refused, with the server's own code.
    let second = tags
        .iter()
        .position(|t| got[1].1 == format!("pipelined {t}"))
        .unwrap();
    for (i, r) in results.iter().enumerate() {
        if i == second {
            let err = r.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
            assert_eq!(smtp_code(err), (554, Some("5.7.1".into())), "{err}");
            assert!(err.to_string().contains("Message 2 refused"), "{err}");
        } else {
            let receipt = r
                .as_ref()
                .unwrap_or_else(|e| panic!("{} failed: {e}", tags[i]));
            assert_eq!(receipt.attempts, 1);
        }
    }
    assert_eq!(stats.transactions, 2, "{stats}");
    assert_eq!(stats.connections_opened, 1, "{stats}");
    assert!(
        stats.pipelined_transactions >= 2,
        "the 2nd behind the 1st's end of data, the 3rd behind the 2nd's: {stats}"
    );
}

#[tokio::test]
async fn a_connection_lost_after_the_second_final_dot_makes_only_that_message_ambiguous() {
    let env = TestEnv::load_file();
    let server = FaultServer::start(&env, "drop-after-second-data", &[]);
    let t = fault(&server);
    let tags = ["one", "two", "three"];
    let msgs = tags.map(fault_message);
    let results = three_at_once(&t, &msgs).await;
    let stats = t.stats();
    println!("{stats}");
    let got = received(&server);
    println!("{got:?}");
    let second = tags
        .iter()
        .position(|t| got[1].1 == format!("pipelined {t}"))
        .unwrap();
    let first = tags
        .iter()
        .position(|t| got[0].1 == format!("pipelined {t}"))
        .unwrap();
    let third = 3 - first - second;
    assert_eq!(got[0].0, 1);
    assert_eq!(got[1].0, 1, "the second on the first connection");

    let err = results[second].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert!(results[first].as_ref().unwrap().attempts == 1);
    let r3 = results[third]
        .as_ref()
        .unwrap_or_else(|e| panic!("the third failed: {e}"));
    assert_eq!(r3.attempts, 2, "resent once on a new connection: {r3:?}");
    // The third: its commands went out behind the second's `.`, its data never did; it was
    // received exactly once, on the second connection.
    let third_copies: Vec<_> = got
        .iter()
        .filter(|(_, s)| *s == format!("pipelined {}", tags[third]))
        .collect();
    assert_eq!(third_copies.len(), 1, "{got:?}");
    assert_eq!(third_copies[0].0, 2, "{got:?}");
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(stats.connections_opened, 2, "{stats}");
    assert_eq!(stats.broken_connections_replaced, 1, "{stats}");
    assert!(stats.pipelined_transactions >= 2, "{stats}");
    assert_eq!(server.count("drop"), 1);
}
