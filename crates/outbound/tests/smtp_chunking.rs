//! Several `BDAT` transactions in flight on one connection (RFC 3030 with RFC 2920), against
//! a scripted server on loopback that offers CHUNKING: it answers nothing until it has read
//! three whole transactions, so these tests pass only if the client writes the second and
//! third before it has any reply to the first. Then it refuses one, or closes the connection,
//! to check that every outcome goes to its own message. (Postfix, which also offers
//! CHUNKING, is driven the same way in `outbound-live-tests/tests/smtp_pipelining.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::{ErrorKind, Message, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does with the `n`th transaction it reads (from 1) on its first connection.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fate {
    Accept,
    /// `554` to its BDAT.
    Reject,
    /// `421` to its MAIL, then the connection is closed.
    Close421,
    /// The connection is closed, with no reply to this transaction.
    Drop,
    /// `502` to the RSET before it; the transaction itself is then accepted.
    RefuseRset,
}

#[derive(Default, Debug)]
struct Seen {
    /// Each connection's client lines (commands; chunks as `<chunk Subject>`).
    connections: Vec<Vec<String>>,
    /// Subjects of the messages answered with 250 to their BDAT.
    delivered: Vec<String>,
}

/// Serves connections; on the first one, holds every reply until `hold` transactions were
/// read, then answers by `fates`. Later connections answer at once and accept everything.
async fn serve(fates: Vec<Fate>, hold: usize) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((stream, _)) = listener.accept().await {
            let (fates, hold) = if first {
                (fates.clone(), hold)
            } else {
                (Vec::new(), 0)
            };
            first = false;
            let seen = shared.clone();
            tokio::spawn(async move {
                let index = {
                    let mut s = seen.lock().unwrap();
                    s.connections.push(Vec::new());
                    s.connections.len() - 1
                };
                let _ = session(stream, &fates, hold, &seen, index).await;
            });
        }
    });
    (port, seen)
}

async fn session(
    stream: tokio::net::TcpStream,
    fates: &[Fate],
    hold: usize,
    seen: &Mutex<Seen>,
    conn: usize,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 test ESMTP\r\n").await?;
    // Replies not sent yet.
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut transactions = 0;
    // A 421 was queued: what follows is read but not processed (as a closing server).
    let mut closing = false;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        seen.lock().unwrap().connections[conn].push(command.clone());
        let fate_of_next = fates.get(transactions).copied().unwrap_or(Fate::Accept);
        if closing {
            if let Some(size) = upper.strip_prefix("BDAT ") {
                let size: usize = size.trim_end_matches(" LAST").parse().unwrap();
                read.read_exact(&mut vec![0u8; size]).await?;
                transactions += 1;
            }
        } else if upper.starts_with("MAIL") && fate_of_next == Fate::Close421 {
            closing = true;
        }
        if closing && !held.iter().any(|r| r.starts_with(b"421")) {
            held.push(b"421 4.3.2 closing the session now\r\n".to_vec());
        }
        if closing {
            if transactions >= hold {
                for r in held.drain(..) {
                    write.write_all(&r).await?;
                    if r.starts_with(b"421") {
                        return Ok(());
                    }
                }
            }
            continue;
        }
        let reply: Vec<u8> = if upper.starts_with("EHLO") {
            b"250-test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n".to_vec()
        } else if upper.starts_with("RSET") && fate_of_next == Fate::RefuseRset {
            b"502 5.5.2 RSET not today\r\n".to_vec()
        } else if upper.starts_with("RSET")
            || upper.starts_with("MAIL")
            || upper.starts_with("RCPT")
        {
            b"250 2.0.0 ok\r\n".to_vec()
        } else if let Some(size) = upper.strip_prefix("BDAT ") {
            let size: usize = size.trim_end_matches(" LAST").parse().unwrap();
            let mut chunk = vec![0u8; size];
            read.read_exact(&mut chunk).await?;
            let text = String::from_utf8_lossy(&chunk).to_string();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("?")
                .to_string();
            seen.lock().unwrap().connections[conn].push(format!("<chunk {subject}>"));
            transactions += 1;
            match fate_of_next {
                Fate::Accept | Fate::RefuseRset => {
                    seen.lock().unwrap().delivered.push(subject.clone());
                    format!("250 2.0.0 queued as {subject}\r\n").into_bytes()
                }
                Fate::Reject => b"554 5.7.1 message refused by policy\r\n".to_vec(),
                Fate::Drop | Fate::Close421 => Vec::new(),
            }
        } else if upper.starts_with("QUIT") {
            b"221 2.0.0 bye\r\n".to_vec()
        } else {
            b"502 5.5.2 unknown command\r\n".to_vec()
        };
        let drop_now = upper.starts_with("BDAT") && fate_of_next == Fate::Drop;
        // An empty entry marks where the connection goes away.
        held.push(if drop_now { Vec::new() } else { reply });
        let in_transaction = ["MAIL", "RCPT", "RSET", "BDAT"]
            .iter()
            .any(|c| upper.starts_with(c));
        if in_transaction && transactions < hold {
            continue;
        }
        for r in held.drain(..) {
            if r.is_empty() {
                return Ok(()); // dropped: nothing more is written
            }
            write.write_all(&r).await?;
            if r.starts_with(b"421") || r.starts_with(b"221") {
                return Ok(());
            }
        }
    }
}

fn transport(port: u16) -> SmtpTransport {
    SmtpTransport::builder("127.0.0.1")
        .port(port)
        .tls(TlsMode::None)
        .pool_size(1)
        .chunking(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn message(n: usize) -> Message {
    Message::builder()
        .from("app@example.com")
        .to(format!("user{n}@example.com"))
        .subject(format!("m{n}"))
        .text(format!("message {n}"))
        .build()
        .unwrap()
}

type Sent = Vec<Result<outbound::Receipt, outbound::Error>>;

/// Sends three messages at once on a pool of one connection to a server that holds its
/// replies until it has read all three transactions, then meets them with `fates`; returns
/// each send's result and what the server saw. Times out unless the three were pipelined.
async fn send_three(fates: [Fate; 3]) -> (Sent, Arc<Mutex<Seen>>) {
    let (port, seen) = serve(fates.to_vec(), 3).await;
    let t = transport(port);
    let (m1, m2, m3) = (message(1), message(2), message(3));
    let sends = async { tokio::join!(t.send(&m1), t.send(&m2), t.send(&m3)) };
    let (a, b, c) = tokio::time::timeout(Duration::from_secs(20), sends)
        .await
        .expect("the server holds its replies until three transactions were written");
    t.close().await;
    (vec![a, b, c], seen)
}

#[tokio::test]
async fn three_bdat_transactions_are_in_flight_and_a_refused_one_is_its_own() {
    let (results, seen) = send_three([Fate::Accept, Fate::Reject, Fate::Accept]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let refused = results[1].as_ref().unwrap_err();
    assert_eq!(refused.smtp_code(), Some(554), "{refused}");
    assert_eq!(refused.kind(), ErrorKind::Permanent, "{refused}");
    assert!(results[2].is_ok(), "{:?}", results[2]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.delivered, ["m1", "m3"]);
    assert_eq!(seen.connections.len(), 1, "{seen:?}");
    // Each transaction written behind another starts with RSET.
    let lines = &seen.connections[0];
    let rsets = lines
        .iter()
        .filter(|l| l.eq_ignore_ascii_case("RSET"))
        .count();
    assert_eq!(rsets, 2, "{lines:?}");
}

#[tokio::test]
async fn a_connection_lost_with_bdat_transactions_in_flight_leaves_those_ambiguous() {
    // The server answers the first, then closes without a word on the second and third: it
    // had both whole messages, so either may have been delivered.
    let (results, seen) = send_three([Fate::Accept, Fate::Drop, Fate::Accept]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    for r in &results[1..] {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Ambiguous, "{e}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connections.len(), 1, "nothing was resent: {seen:?}");
}

#[tokio::test]
async fn after_a_421_the_transactions_behind_it_are_resent_once() {
    // 421 to the second transaction's MAIL: the server processed nothing after it, so the
    // third (already written) is sent again on a new connection, and delivered once.
    let (results, seen) = send_three([Fate::Accept, Fate::Close421, Fate::Accept]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let closed = results[1].as_ref().unwrap_err();
    assert_eq!(closed.smtp_code(), Some(421), "{closed}");
    assert_ne!(closed.kind(), ErrorKind::Ambiguous, "{closed}");
    assert!(results[2].is_ok(), "{:?}", results[2]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.delivered, ["m1", "m3"], "{seen:?}");
    assert_eq!(seen.connections.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn a_refused_rset_leaves_its_transaction_ambiguous_and_nothing_is_resent() {
    // The server refuses the RSET before the second transaction but then takes it (and the
    // third) whole: the client cannot tell what it did with them.
    let (results, seen) = send_three([Fate::Accept, Fate::RefuseRset, Fate::Accept]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    for r in &results[1..] {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Ambiguous, "{e}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.delivered, ["m1", "m2", "m3"], "{seen:?}");
    assert_eq!(seen.connections.len(), 1, "nothing was resent: {seen:?}");
}
