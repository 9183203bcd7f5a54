#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fault sweep (issue 19): four messages sent at once over one pooled connection
//! (pipelined over DATA, or several `BDAT … LAST` in flight), one at a time (a pooled idle
//! connection), and without PIPELINING; also with a server that refuses part of every message
//! (so RSET after a refusal is an event too), and with a large message first (so a write
//! blocks or fails midway). A scripted server (`support::scripted_smtpd`) breaks the exchange
//! at one event per run: every reply (dropped after it, stalled, `421`, a `4xx`, a `5xx`;
//! with the large message also aborted after it) and every point of the client's byte stream
//! (each command line, the first byte and half of a payload, the payload without its `.`,
//! inside the final `.`, the whole `.`, half a BDAT chunk, the whole chunk: dropped, aborted,
//! stalled). The events come from a run without faults, so every one of them is broken once.
//!
//! After each run, every message that failed "safe to resend" is sent again, as `Retry` would;
//! then, for every message, from the server's record (what it processed, and everything the
//! client wrote) the invariant is checked:
//! - reported delivered => the server accepted exactly that copy (250 to its end of data), for
//!   the recipients it accepted;
//! - the server received its end of data (and did not refuse it) => never safe to resend;
//!   nor when the client wrote its end of data, unless the server closed with `421` first;
//! - a refusal => the server sent that code to this message or to the session;
//! - Ambiguous => the client wrote its end of data (the server may have it);
//! - every send resolves (none hangs), and at most one copy is held by the server;
//! - the transport's own replacement of a broken pooled connection re-sends a message only if
//!   the server never received its end of data (nor did the client write it).
//!
//! No sleeps order anything: a fault is "the k-th event", the sends are joined in one task,
//! and the server is waited for by notification. Timeouts only end stalls.
//!
//! `FAULT_SWEEP_ONLY=text` runs the scenarios whose name contains `text`;
//! `FAULT_SWEEP_SHOW=text` prints every run whose report contains it (with `--nocapture`).

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use outbound::message::PreparedMessage;
use outbound::smtp::{SmtpTransport, Timeouts, TlsMode};
use outbound::{Attachment, Error, ErrorKind, Message, Receipt, Transport};
use support::scripted_smtpd::{Action, At, Expected, Fault, Record, Refusal, Server, Stop};

/// The client's limit for every phase: how long a stall lasts.
const STALL: Duration = Duration::from_millis(300);
/// The limit for writing a large message and waiting for its end of data's reply.
const LARGE_STALL: Duration = Duration::from_secs(3);
/// A send or the server not done after this has hung.
const HANG: Duration = Duration::from_secs(20);
/// Fault points run at once per thread.
const CONCURRENCY: usize = 48;
/// Fault points with a large message run at once (on a thread of their own, beside the
/// others).
const LARGE_CONCURRENCY: usize = 4;
/// Messages per run.
const MESSAGES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sends {
    /// All at once: queued on the one connection, pipelined behind each other.
    Together,
    /// One after another, each after the previous one's outcome (a pooled idle connection).
    OneByOne,
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    keywords: &'static [&'static str],
    chunking: bool,
    sends: Sends,
    /// The server refuses part of every message (see [`REFUSALS`]), so the events include
    /// RSET after a refusal.
    refusals: bool,
    /// Message 0 is large (see [`LARGE`]): a stall at its first byte blocks the client's write
    /// midway, an abort makes it fail.
    large: bool,
}

/// What the server always refuses in the scenarios with refusals, per message: one of two
/// recipients, the only recipient, DATA (not met with BDAT), the end of data.
const REFUSALS: [Refusal; MESSAGES] = [
    Refusal::Rcpt(1),
    Refusal::Rcpt(0),
    Refusal::Data,
    Refusal::End,
];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "DATA, pipelined",
        keywords: &["PIPELINING", "8BITMIME", "SIZE 10485760"],
        chunking: false,
        sends: Sends::Together,
        refusals: false,
        large: false,
    },
    Scenario {
        name: "BDAT, pipelined",
        keywords: &["PIPELINING", "CHUNKING", "8BITMIME"],
        chunking: true,
        sends: Sends::Together,
        refusals: false,
        large: false,
    },
    Scenario {
        name: "DATA, no PIPELINING",
        keywords: &["8BITMIME", "SIZE 10485760"],
        chunking: false,
        sends: Sends::Together,
        refusals: false,
        large: false,
    },
    Scenario {
        name: "DATA, one by one",
        keywords: &["PIPELINING", "8BITMIME"],
        chunking: false,
        sends: Sends::OneByOne,
        refusals: false,
        large: false,
    },
    Scenario {
        name: "BDAT, one by one",
        keywords: &["PIPELINING", "CHUNKING"],
        chunking: true,
        sends: Sends::OneByOne,
        refusals: false,
        large: false,
    },
    Scenario {
        name: "DATA, pipelined, with refusals",
        keywords: &["PIPELINING", "8BITMIME"],
        chunking: false,
        sends: Sends::Together,
        refusals: true,
        large: false,
    },
    Scenario {
        name: "BDAT, pipelined, with refusals",
        keywords: &["PIPELINING", "CHUNKING", "8BITMIME"],
        chunking: true,
        sends: Sends::Together,
        refusals: true,
        large: false,
    },
    Scenario {
        name: "DATA, no PIPELINING, with refusals",
        keywords: &["8BITMIME"],
        chunking: false,
        sends: Sends::Together,
        refusals: true,
        large: false,
    },
    Scenario {
        name: "DATA, pipelined, a large message first",
        keywords: &["PIPELINING", "8BITMIME"],
        chunking: false,
        sends: Sends::Together,
        refusals: false,
        large: true,
    },
];

/// The attachment of the large message (3.5 MiB, about 4.9 MB in base64): more than the
/// client's send buffer takes (Linux lets it grow to 4 MiB) once the server stops reading.
const LARGE: usize = 7 << 19;

const REPLY_ACTIONS: &[Action] = &[
    Action::Drop,
    Action::Abort,
    Action::Stall,
    Action::Close421,
    Action::Refuse4xx,
    Action::Refuse5xx,
];
const POINT_ACTIONS: &[Action] = &[Action::Drop, Action::Abort, Action::Stall];

/// The messages as they go on the wire: each with its own envelope sender (how the server
/// tells them apart), one or two recipients; with `large`, the first one carries a large
/// attachment (prepared once: rendering it takes a while in a debug build).
fn wires(large: bool) -> Vec<Arc<Wire>> {
    static LARGE_WIRE: OnceLock<Arc<Wire>> = OnceLock::new();
    (0..MESSAGES)
        .map(|i| {
            if large && i == 0 {
                let large = || Arc::new(wire(message(i, true).prepare(None).unwrap()));
                LARGE_WIRE.get_or_init(large).clone()
            } else {
                Arc::new(wire(message(i, false).prepare(None).unwrap()))
            }
        })
        .collect()
}

fn message(i: usize, large: bool) -> Message {
    let mut b = Message::builder()
        .from(format!("s{i}@example.test"))
        .to(format!("r{i}a@example.test"))
        .subject(format!("fault sweep {i}"))
        .text(format!("Message {i} of the fault sweep.\nSecond line.\n"));
    if i % 2 == 0 {
        b = b.to(format!("r{i}b@example.test"));
    }
    if large {
        let content: Vec<u8> = (0..LARGE).map(|n| (n % 251) as u8).collect();
        b = b.attach(Attachment::from_bytes("large.bin", content));
    }
    b.build().unwrap()
}

fn transport(port: u16, scenario: &Scenario) -> SmtpTransport {
    let mut timeouts = Timeouts::all(STALL);
    if scenario.large {
        // Megabytes through a debug build on a busy machine: only a stall may time out.
        timeouts.data_end = LARGE_STALL;
    }
    SmtpTransport::builder("127.0.0.1")
        .port(port)
        .tls(TlsMode::None)
        .local_hostname("client.example.test")
        .pool_size(1)
        .chunking(scenario.chunking)
        .timeouts(timeouts)
        .build()
        .unwrap()
}

/// A message as it goes on the wire.
struct Wire {
    prepared: PreparedMessage,
    /// The payload with its final `.`'s first byte, as DATA sends it.
    data_end: Vec<u8>,
    /// `BDAT n LAST` and the whole chunk.
    bdat: Vec<u8>,
}

fn wire(prepared: PreparedMessage) -> Wire {
    let bytes = prepared.bytes().unwrap().to_vec();
    assert!(
        !bytes.starts_with(b".") && memchr::memmem::find(&bytes, b"\n.").is_none(),
        "the sweep's messages need no dot-stuffing"
    );
    let mut payload = bytes;
    if !payload.ends_with(b"\r\n") {
        payload.extend_from_slice(b"\r\n");
    }
    let mut bdat = format!("BDAT {} LAST\r\n", payload.len()).into_bytes();
    bdat.extend_from_slice(&payload);
    let mut data_end = payload;
    data_end.push(b'.');
    Wire {
        prepared,
        data_end,
        bdat,
    }
}

type Outcome = Result<Receipt, Error>;

/// Polls every future in order, in this task, until all are done: the sends are all queued
/// before the first one's connection has its first reply.
async fn join_all<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

async fn send_all(
    t: &SmtpTransport,
    wires: &[Arc<Wire>],
    which: &[usize],
    sends: Sends,
) -> Vec<(usize, Outcome)> {
    match sends {
        Sends::Together => {
            let futures = which
                .iter()
                .map(|&i| {
                    Box::pin(async move { (i, t.send_prepared(&wires[i].prepared).await) })
                        as Pin<Box<dyn Future<Output = _> + Send>>
                })
                .collect();
            join_all(futures).await
        }
        Sends::OneByOne => {
            let mut out = Vec::new();
            for &i in which {
                out.push((i, t.send_prepared(&wires[i].prepared).await));
            }
            out
        }
    }
}

/// What one run gave.
struct Run {
    scenario: &'static str,
    fault: Option<Fault>,
    fired: Option<String>,
    /// What each reply and point was (for a run without faults: the events to break).
    reply_events: Vec<String>,
    point_events: Vec<String>,
    outcomes: Vec<(u8, usize, String)>,
    violations: Vec<String>,
    trace: Vec<String>,
    /// The server's transactions, one line each.
    txns: Vec<String>,
    stats: outbound::smtp::WireStats,
    rsets: usize,
}

/// Runs `scenario` against a server with `fault`: round 1 sends every message; round 2 sends
/// again those that failed safe to resend. Then checks the invariant.
async fn run(scenario: &'static Scenario, fault: Option<Fault>) -> Run {
    let wires = wires(scenario.large);
    let expected = wires
        .iter()
        .zip(REFUSALS)
        .map(|(w, refusal)| Expected {
            sender: w.prepared.envelope().from.clone(),
            data_len: w.data_end.len() - 1,
            refusal: scenario.refusals.then_some(refusal),
        })
        .collect();
    let server = Server::start(scenario.keywords, expected, fault).await;
    let t = transport(server.port, scenario);
    let mut violations = Vec::new();
    let mut rounds: Vec<(u8, Vec<(usize, Outcome)>)> = Vec::new();
    let mut which: Vec<usize> = (0..MESSAGES).collect();
    for round in [1u8, 2] {
        if which.is_empty() {
            break;
        }
        server.set_round(round);
        let outcomes = tokio::time::timeout(HANG, send_all(&t, &wires, &which, scenario.sends));
        let outcomes = outcomes.await;
        // A stalled connection reads what the client wrote only now: it never unblocks one.
        server.round_done(round);
        let Ok(outcomes) = outcomes else {
            violations.push(format!("round {round}: a send never resolved"));
            break;
        };
        // Every connection closed, so the next round's are its own.
        t.close().await;
        if tokio::time::timeout(HANG, server.wait_idle())
            .await
            .is_err()
        {
            violations.push(format!(
                "round {round}: the client left a connection open after close()"
            ));
            break;
        }
        // (The large message is not sent again: megabytes through a debug build are slow,
        // and what it is there for, a write broken midway, happens in round 1.)
        which = outcomes
            .iter()
            .filter(|(_, o)| o.as_ref().is_err_and(Error::is_retryable))
            .map(|(i, _)| *i)
            .filter(|&i| !(scenario.large && i == 0))
            .collect();
        rounds.push((round, outcomes));
    }
    let rec = server.record();
    let written = Written::of(&rec, &wires, scenario.chunking);
    for (round, outcomes) in &rounds {
        for (i, outcome) in outcomes {
            check(&rec, &written, &wires, *round, *i, outcome, &mut violations);
        }
    }
    check_copies(&rec, &wires, &rounds, &mut violations);
    Run {
        scenario: scenario.name,
        fault,
        fired: rec.fired.clone(),
        reply_events: rec.reply_events.clone(),
        point_events: rec.point_events.clone(),
        outcomes: rounds
            .iter()
            .flat_map(|(r, o)| o.iter().map(move |(i, o)| (*r, *i, describe(o))))
            .collect(),
        violations,
        trace: rec.trace.clone(),
        txns: rec.txns.iter().map(|t| format!("{t:?}")).collect(),
        stats: t.stats(),
        rsets: rec.rsets,
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Ok(r) => format!("Ok (accepted {:?})", r.accepted),
        Err(e) => format!("{:?}: {e}", e.kind()),
    }
}

/// How often the client wrote each message's end of data (the first byte of its final `.`,
/// or its whole `BDAT` chunk), per round: what the server processed, and what it read after
/// it stopped (except behind a `421`: the client knows the server processed none of it).
struct Written {
    counts: std::collections::HashMap<(u8, usize), usize>,
    /// Rounds with a connection aborted by the server: the client's bytes after the abort
    /// are not known.
    aborted: Vec<u8>,
    /// Rounds with a `BDAT` written (its chunk goes out with its commands in one write).
    bdat: Vec<u8>,
}

impl Written {
    fn of(rec: &Record, wires: &[Arc<Wire>], chunking: bool) -> Written {
        let mut counts = std::collections::HashMap::new();
        for t in rec.txns.iter().filter(|t| t.end_written) {
            if let Some(m) = t.msg {
                *counts.entry((t.round, m)).or_default() += 1;
            }
        }
        let mut aborted = Vec::new();
        let mut bdat = Vec::new();
        for c in &rec.conns {
            if c.stop == Some(Stop::Abort) {
                aborted.push(c.round);
            }
            let raw = &c.raw;
            if chunking && memchr::memmem::find(raw, b"BDAT ").is_some() {
                bdat.push(c.round);
            }
            if c.stop == Some(Stop::Closed421) {
                continue;
            }
            // Ends of DATA the server did not process: a `.` at or after where it stopped.
            let from = c.processed.saturating_sub(2);
            for p in memchr::memmem::find_iter(&raw[from..], b"\r\n.") {
                let end = from + p + 3;
                if end - 1 < c.processed {
                    continue;
                }
                for (i, w) in wires.iter().enumerate() {
                    let n = w.data_end.len();
                    if end >= n && raw[end - n..end] == w.data_end[..] {
                        *counts.entry((c.round, i)).or_default() += 1;
                    }
                }
            }
            // Whole chunks the server did not process whole.
            if chunking {
                for h in memchr::memmem::find_iter(raw, b"BDAT ") {
                    for (i, w) in wires.iter().enumerate() {
                        if h + w.bdat.len() > c.processed && raw[h..].starts_with(&w.bdat) {
                            *counts.entry((c.round, i)).or_default() += 1;
                        }
                    }
                }
            }
        }
        Written {
            counts,
            aborted,
            bdat,
        }
    }

    fn count(&self, round: u8, i: usize) -> usize {
        self.counts.get(&(round, i)).copied().unwrap_or(0)
    }
}

/// The invariant for message `i`'s outcome in `round`.
fn check(
    rec: &Record,
    w: &Written,
    wires: &[Arc<Wire>],
    round: u8,
    i: usize,
    outcome: &Outcome,
    v: &mut Vec<String>,
) {
    let txns: Vec<_> = rec
        .txns
        .iter()
        .filter(|t| t.msg == Some(i) && t.round == round)
        .collect();
    let held = txns.iter().filter(|t| t.held()).count();
    let accepted: Vec<_> = txns.iter().filter(|t| t.accepted()).collect();
    let written = w.count(round, i);
    let aborted = w.aborted.contains(&round);
    let mut fail = |what: String| v.push(format!("round {round}, message {i}: {what}"));

    // The transport re-sends on its own only what the server never received.
    if let Some((_, earlier)) = txns.split_last() {
        if let Some(t) = earlier.iter().find(|t| t.end_complete) {
            fail(format!(
                "re-sent by the transport after the server had received its end of data on c{}",
                t.conn
            ));
        }
    }
    if written > 1 {
        fail(format!(
            "its end of data was written {written} times (re-sent after it was written)"
        ));
    }
    match outcome {
        Ok(receipt) => {
            if accepted.len() != 1 {
                fail(format!(
                    "reported delivered, but the server accepted {} copies",
                    accepted.len()
                ));
            }
            if receipt.message_id != wires[i].prepared.message_id() {
                fail(format!(
                    "receipt for another message: {}",
                    receipt.message_id
                ));
            }
            if let Some(t) = accepted.first() {
                let mut got = receipt.accepted.clone();
                let mut want = t.rcpts.clone();
                got.sort();
                want.sort();
                if got != want {
                    fail(format!(
                        "receipt names recipients {got:?}, the server accepted {want:?}"
                    ));
                }
            }
        }
        Err(e) => match e.kind() {
            ErrorKind::Ambiguous => {
                let data_354 = txns.iter().any(|t| t.got_354);
                if written == 0 && !(aborted && (data_354 || w.bdat.contains(&round))) {
                    fail(format!(
                        "Ambiguous, but the client never wrote its end of data: {e}"
                    ));
                }
            }
            ErrorKind::Transient | ErrorKind::Permanent => {
                let sent = e.smtp_code().is_some_and(|code| {
                    txns.iter().any(|t| t.codes.contains(&code))
                        || rec.session_codes.contains(&(round, code))
                });
                if !sent {
                    fail(format!("a refusal the server did not send: {e}"));
                }
                if held > 0 {
                    fail(format!("reported refused, but the server has it: {e}"));
                }
            }
            ErrorKind::Network | ErrorKind::Timeout => {
                if held > 0 {
                    fail(format!(
                        "reported safe to resend, but the server received its end of data: {e}"
                    ));
                }
                if written > 0 {
                    fail(format!(
                        "reported safe to resend, but the client had written its end of data: {e}"
                    ));
                }
            }
            other => fail(format!("unexpected kind {other:?}: {e}")),
        },
    }
}

/// At most one copy per message over both rounds; only what failed safe to resend went out
/// again; every copy carries its own Message-ID.
fn check_copies(
    rec: &Record,
    wires: &[Arc<Wire>],
    rounds: &[(u8, Vec<(usize, Outcome)>)],
    v: &mut Vec<String>,
) {
    for (i, w) in wires.iter().enumerate() {
        let held = rec
            .txns
            .iter()
            .filter(|t| t.msg == Some(i) && t.held())
            .count();
        if held > 1 {
            v.push(format!("message {i}: the server holds {held} copies"));
        }
        let resent = rounds
            .iter()
            .any(|(r, o)| *r == 2 && o.iter().any(|(j, _)| *j == i));
        if !resent && rec.txns.iter().any(|t| t.msg == Some(i) && t.round == 2) {
            v.push(format!("message {i}: sent in round 2 though not asked"));
        }
        let id = w.prepared.message_id().trim_matches(['<', '>']);
        for t in rec.txns.iter().filter(|t| t.msg == Some(i)) {
            if t.message_id.as_deref().is_some_and(|m| m != id) {
                v.push(format!(
                    "message {i}: its transaction carried Message-ID {:?}",
                    t.message_id
                ));
            }
        }
    }
    if rec.txns.iter().any(|t| t.msg.is_none()) {
        v.push("a transaction for an unknown sender".into());
    }
}

/// Every fault point of a scenario: each action at each reply and point of its run without
/// faults (`clean`). With a large message, only its DATA and inside its payload, where a
/// write can block or fail midway (the rest is as in the other scenarios, and each run moves
/// megabytes).
fn faults(scenario: &Scenario, clean: &Run) -> Vec<Fault> {
    let chosen = |events: &[String], end: &str, keep: &dyn Fn(&str) -> bool| -> Vec<usize> {
        let first_end = events.iter().position(|e| e.ends_with(end));
        (0..events.len())
            .filter(|&k| match (scenario.large, first_end) {
                (true, Some(last)) => k <= last && keep(&events[k]),
                _ => true,
            })
            .collect()
    };
    let replies = chosen(&clean.reply_events, ": DATA", &|e| e.ends_with(": DATA"));
    let points = chosen(&clean.point_events, ": the payload, no `.`", &|e| {
        e.contains("payload")
    });
    let mut out = Vec::new();
    for k in replies {
        // An abort after a reply only differs from a drop in how the client's next read or
        // write fails (reset, not end of stream): worth it where a large write is under way.
        let actions = REPLY_ACTIONS
            .iter()
            .filter(|&&a| a != Action::Abort || scenario.large);
        for &action in actions {
            out.push(Fault {
                at: At::Reply(k),
                action,
            });
        }
    }
    for k in points {
        for &action in POINT_ACTIONS {
            out.push(Fault {
                at: At::Point(k),
                action,
            });
        }
    }
    out
}

/// Runs `jobs` on `threads` threads, each a current-thread runtime running up to
/// `concurrency` at once.
fn run_all(jobs: Vec<(&'static Scenario, Fault)>, threads: usize, concurrency: usize) -> Vec<Run> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    loop {
                        while set.len() < concurrency {
                            let k = next.fetch_add(1, Ordering::SeqCst);
                            let Some(&(scenario, fault)) = jobs.get(k) else {
                                break;
                            };
                            set.spawn(run(scenario, Some(fault)));
                        }
                        match set.join_next().await {
                            Some(r) => results.lock().unwrap().push(r.unwrap()),
                            None => break,
                        }
                    }
                });
            });
        }
    });
    results.into_inner().unwrap()
}

fn report(r: &Run) -> String {
    let mut s = format!(
        "[{}] fault {:?} fired: {:?}\n  violations:\n",
        r.scenario, r.fault, r.fired
    );
    for v in &r.violations {
        s += &format!("    - {v}\n");
    }
    s += "  outcomes:\n";
    for (round, i, o) in &r.outcomes {
        s += &format!("    round {round} message {i}: {o}\n");
    }
    s += "  server transactions:\n";
    for t in &r.txns {
        s += &format!("    {t}\n");
    }
    s += "  trace:\n";
    for l in &r.trace {
        s += &format!("    {l}\n");
    }
    s
}

#[test]
fn fault_sweep_keeps_the_delivery_invariant() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The events of each scenario, from a run without faults (which must deliver everything
    // the server does not refuse).
    let mut jobs = Vec::new();
    // FAULT_SWEEP_ONLY=text runs only the scenarios whose name contains `text`.
    let only = std::env::var("FAULT_SWEEP_ONLY").unwrap_or_default();
    for scenario in SCENARIOS.iter().filter(|s| s.name.contains(&only)) {
        let clean = rt.block_on(run(scenario, None));
        assert!(clean.violations.is_empty(), "{}", report(&clean));
        let want: Vec<&str> = match (scenario.refusals, scenario.chunking) {
            (false, _) => vec!["Ok"; MESSAGES],
            // Refused DATA is Transient, so sent again (and refused again).
            (true, false) => vec!["Ok", "Permanent", "Transient", "Permanent", "Transient"],
            (true, true) => vec!["Ok", "Permanent", "Ok", "Permanent"],
        };
        let got: Vec<&str> = clean
            .outcomes
            .iter()
            .map(|o| o.2.split([' ', ':']).next().unwrap_or(""))
            .collect();
        assert_eq!(got, want, "{}", report(&clean));
        match (
            scenario.sends,
            scenario.chunking,
            scenario.keywords.contains(&"PIPELINING"),
        ) {
            // The sends queued behind each other: pipelined behind the previous `.`…
            (Sends::Together, false, true) => assert!(
                clean.stats.pipelined_transactions >= if scenario.refusals { 1 } else { 2 },
                "{:?}\n{}",
                clean.stats,
                report(&clean)
            ),
            // …or written in one BDAT window (each behind another begins with RSET).
            (Sends::Together, true, _) => assert!(clean.rsets >= 2, "{}", report(&clean)),
            _ => {}
        }
        // One connection per round.
        let rounds = 1 + u64::from(clean.outcomes.len() > MESSAGES);
        assert_eq!(clean.stats.connections_opened, rounds, "{}", report(&clean));
        for fault in faults(scenario, &clean) {
            jobs.push((scenario, fault));
        }
    }
    drop(rt);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    // Runs with a large message hold tens of megabytes each: a few at a time.
    let (large, small): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(s, _)| s.large);
    let runs = std::thread::scope(|s| {
        let large = s.spawn(|| run_all(large, 1, LARGE_CONCURRENCY));
        let mut runs = run_all(small, threads, CONCURRENCY);
        runs.extend(large.join().unwrap());
        runs
    });

    let fired: Vec<&Run> = runs.iter().filter(|r| r.fired.is_some()).collect();
    let checked: usize = runs.iter().map(|r| r.outcomes.len()).sum();
    println!(
        "fault sweep: {} fault points ({} planned), {checked} message outcomes checked, {:.1} s",
        fired.len(),
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    for scenario in SCENARIOS {
        let mine: Vec<_> = fired
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for (_, _, o) in mine.iter().flat_map(|r| &r.outcomes) {
            *kinds
                .entry(o.split([' ', ':']).next().unwrap_or(""))
                .or_default() += 1;
        }
        println!(
            "  {}: {} fault points; outcomes {kinds:?}",
            scenario.name,
            mine.len()
        );
    }
    // The transport's own replacement of a broken pooled connection was exercised (and
    // checked: it re-sends only what the server never received).
    let replaced = fired
        .iter()
        .filter(|r| r.stats.broken_connections_replaced > 0)
        .count();
    println!("  the transport replaced a broken pooled connection in {replaced} runs");
    assert!(replaced > 0);
    // FAULT_SWEEP_SHOW=text prints every run whose report contains `text` (e.g. `Close421 at
    // Reply(10)`, or a scenario's name).
    if let Ok(show) = std::env::var("FAULT_SWEEP_SHOW") {
        for r in runs.iter().map(report).filter(|r| r.contains(&show)) {
            println!("{r}");
        }
    }
    let bad: Vec<&Run> = runs.iter().filter(|r| !r.violations.is_empty()).collect();
    for r in bad.iter().take(5) {
        eprintln!("{}", report(r));
    }
    assert!(
        bad.is_empty(),
        "{} of {} fault points broke the invariant; the first: {:?}",
        bad.len(),
        runs.len(),
        bad.iter()
            .take(20)
            .map(|r| (r.scenario, r.fault, &r.violations))
            .collect::<Vec<_>>()
    );
    if only.is_empty() {
        assert!(
            fired.len() >= 300,
            "only {} fault points fired",
            fired.len()
        );
    }
}
