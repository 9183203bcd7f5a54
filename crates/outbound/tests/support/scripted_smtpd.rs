//! A scripted SMTP server on loopback that breaks the exchange at one chosen event, and
//! records what it received and accepted, per message and per connection.
//!
//! It speaks enough SMTP for the client: the greeting, EHLO (keywords chosen per server) and
//! HELO, MAIL, RCPT, DATA (with dot-unstuffing), `BDAT n LAST`, RSET, NOOP and QUIT, with
//! pipelined input (it answers commands in the order it reads them). Its state follows what
//! it said: a refused MAIL opens no transaction, a refused RCPT adds no recipient, DATA with
//! no recipient gets 554, a refused end of data is not a copy.
//!
//! The events, counted over every connection of one server in the order it processes them:
//! - a *reply*: each reply it is about to send (greeting, EHLO, each command, the end of data);
//! - a *point*: a place in the client's byte stream, reached as the server processes it: the
//!   end of each command line (before it is acted on), and inside a message: its first byte,
//!   half its payload, the whole payload without the final `.`, `\r\n.`, `\r\n.\r`, the whole
//!   `.` (before the reply); for `BDAT`, half the chunk and the whole chunk.
//!
//! A [`Fault`] names one event and what happens there. After the server stops processing a
//! connection it still reads what the client writes, without acting on it (after a stall,
//! only once the test says the round is done; after an abort, not at all): so the record
//! knows both what the server processed and everything the client wrote.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Which event a fault happens at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The `k`th reply (from 0) the server is about to send.
    Reply(usize),
    /// The `k`th point (from 0) of the client's byte stream the server reaches.
    Point(usize),
}

/// What happens at a fault's event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// At a reply: send it, then close (FIN). At a point: close there (FIN).
    Drop,
    /// Like `Drop`, but an abortive close (RST).
    Abort,
    /// Send nothing more and read nothing more (so a large write blocks): the server stops
    /// answering (the client's timeout ends it). Once the test says the round is done, what
    /// the client wrote is read into the record.
    Stall,
    /// At a reply: `421` instead, then close.
    Close421,
    /// At a reply: a `4xx` instead (and the server acts as if it refused).
    Refuse4xx,
    /// At a reply: a `5xx` instead.
    Refuse5xx,
}

/// One fault: an event and what happens there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub at: At,
    pub action: Action,
}

/// A message the server is to expect, so it can name the message a transaction carries (by
/// its envelope sender) and cut inside its payload.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The envelope sender, unique per message.
    pub sender: String,
    /// The payload's length on the wire in DATA: dot-stuffed, ending with CRLF, without the
    /// final `.` line.
    pub data_len: usize,
    /// A refusal the server always gives this message (besides any fault).
    pub refusal: Option<Refusal>,
}

/// Where a scripted refusal comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `550` to the RCPT with this index (from 0).
    Rcpt(usize),
    /// `451` to DATA.
    Data,
    /// `554` to the end of data (the final `.` or the `BDAT … LAST` chunk).
    End,
}

/// How a connection ended on the server's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The fault closed it (FIN).
    Drop,
    /// The fault closed it abortively (RST): bytes written after this were not recorded.
    Abort,
    /// The fault stalled it: nothing more was answered.
    Stall,
    /// The server sent `421` and closed it: what followed was not processed, and the client
    /// knows it.
    Closed421,
    /// QUIT answered.
    Quit,
}

/// One connection, as the server saw it.
#[derive(Debug, Default)]
pub struct ConnRecord {
    /// The round (set by the test) when the connection was accepted.
    pub round: u8,
    /// Every byte the client wrote that the server read, processed or not.
    pub raw: Vec<u8>,
    /// How many bytes of `raw` the server processed (acted on).
    pub processed: usize,
    /// How it ended, if the server ended it.
    pub stop: Option<Stop>,
}

/// One transaction (from a MAIL command on).
#[derive(Debug)]
pub struct Txn {
    /// The message (index in the expected list), by its envelope sender.
    pub msg: Option<usize>,
    pub conn: usize,
    pub round: u8,
    /// Recipients the server accepted.
    pub rcpts: Vec<String>,
    /// The server said 354 to its DATA.
    pub got_354: bool,
    /// The server processed the first byte of its final `.`, or its whole `BDAT` chunk.
    pub end_written: bool,
    /// The server received its whole end of data (the final `.`, or the whole `BDAT … LAST`
    /// chunk) and processed it.
    pub end_complete: bool,
    /// The reply the server sent to its end of data, if it sent one.
    pub end_reply: Option<u16>,
    /// Every negative reply code sent to its commands.
    pub codes: Vec<u16>,
    /// RCPT commands received.
    pub rcpts_seen: usize,
    /// The Message-ID header of the data received.
    pub message_id: Option<String>,
}

impl Txn {
    /// The server may hold this copy: it has the whole message and did not refuse it.
    pub fn held(&self) -> bool {
        self.end_complete && self.end_reply.is_none_or(|c| (200..300).contains(&c))
    }

    /// The server said 250 to its end of data.
    pub fn accepted(&self) -> bool {
        self.end_complete && self.end_reply.is_some_and(|c| (200..300).contains(&c))
    }
}

/// What one server saw, over all its connections.
#[derive(Debug, Default)]
pub struct Record {
    /// Replies counted so far (the events [`At::Reply`] counts).
    pub replies: usize,
    /// Points counted so far (the events [`At::Point`] counts).
    pub points: usize,
    /// The fault, once it happened: where.
    pub fired: Option<String>,
    /// What each reply and each point was (by index), e.g. `c0: end of data`.
    pub reply_events: Vec<String>,
    pub point_events: Vec<String>,
    pub conns: Vec<ConnRecord>,
    pub txns: Vec<Txn>,
    /// Negative codes sent outside a transaction (greeting, EHLO, RSET, …), with the round.
    pub session_codes: Vec<(u8, u16)>,
    /// RSET commands received.
    pub rsets: usize,
    /// A short log of both sides, for failure messages.
    pub trace: Vec<String>,
    fault: Option<Fault>,
}

impl Record {
    fn log(&mut self, line: String) {
        if self.trace.len() < 400 {
            self.trace.push(line);
        }
    }

    fn reply_event(&mut self, conn: usize, what: &str) -> Option<Action> {
        let k = self.replies;
        self.replies += 1;
        self.reply_events.push(format!("c{conn}: {what}"));
        self.fire(At::Reply(k), conn, what)
    }

    fn point_event(&mut self, conn: usize, what: &str) -> Option<Action> {
        let k = self.points;
        self.points += 1;
        self.point_events.push(format!("c{conn}: {what}"));
        self.fire(At::Point(k), conn, what)
    }

    fn fire(&mut self, at: At, conn: usize, what: &str) -> Option<Action> {
        let f = self.fault.filter(|f| f.at == at)?;
        self.fault = None;
        let text = format!("{:?} at {at:?} (c{conn}: {what})", f.action);
        self.log(format!("*** {text}"));
        self.fired = Some(text);
        Some(f.action)
    }
}

struct Shared {
    record: Mutex<Record>,
    ehlo: String,
    messages: Vec<Expected>,
    round: AtomicU8,
    /// The last round whose sends all have their outcome (stalled connections wait for it).
    round_done: tokio::sync::watch::Sender<u8>,
    active: AtomicUsize,
    idle: Notify,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running server; its listener stops when this is dropped.
pub struct Server {
    pub port: u16,
    shared: Arc<Shared>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Server {
    /// Starts a server on a free loopback port that offers `keywords` in its EHLO reply and
    /// breaks the exchange at `fault` (none: it never does).
    pub async fn start(keywords: &[&str], messages: Vec<Expected>, fault: Option<Fault>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut ehlo = String::from("250-fault-sweep.test greets you");
        for k in keywords {
            ehlo.push_str("\r\n250-");
            ehlo.push_str(k);
        }
        ehlo.push_str("\r\n250 HELP\r\n");
        let shared = Arc::new(Shared {
            record: Mutex::new(Record {
                fault,
                ..Record::default()
            }),
            ehlo,
            messages,
            round: AtomicU8::new(1),
            round_done: tokio::sync::watch::Sender::new(0),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let accepting = shared.clone();
        let listener = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let id = {
                    let mut rec = accepting.record();
                    rec.conns.push(ConnRecord {
                        round: accepting.round.load(Ordering::SeqCst),
                        ..ConnRecord::default()
                    });
                    rec.conns.len() - 1
                };
                accepting.active.fetch_add(1, Ordering::SeqCst);
                let shared = accepting.clone();
                tokio::spawn(async move {
                    serve(stream, id, &shared).await;
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    shared.idle.notify_waiters();
                });
            }
        });
        Server {
            port,
            shared,
            listener,
        }
    }

    /// Connections accepted from now on belong to `round`.
    pub fn set_round(&self, round: u8) {
        self.shared.round.store(round, Ordering::SeqCst);
    }

    /// Every send of `round` has its outcome: stalled connections of that round read on.
    pub fn round_done(&self, round: u8) {
        self.shared.round_done.send_replace(round);
    }

    /// Waits until every connection accepted so far has ended.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// What the server saw so far.
    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.shared.record()
    }
}

/// Runs one connection: greets, answers what it reads until QUIT, the client's close, or the
/// fault; then ends it the way the fault says.
async fn serve(mut stream: TcpStream, id: usize, shared: &Shared) {
    let mut conn = Conn::new(id, shared);
    let mut stop = {
        let mut rec = shared.record();
        conn.greet(&mut rec)
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !conn.out.is_empty() {
            if stream.write_all(&conn.out).await.is_err() {
                return;
            }
            conn.out.clear();
        }
        if let Some(stop) = stop {
            finish(stream, id, shared, stop, conn.consumed).await;
            return;
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return, // the client closed the connection
            Ok(n) => n,
        };
        let mut rec = shared.record();
        rec.conns[id].raw.extend_from_slice(&buf[..n]);
        conn.inbuf.extend_from_slice(&buf[..n]);
        stop = conn.process(&mut rec);
        let pos = conn.pos;
        conn.inbuf.drain(..pos);
        conn.consumed += pos;
        conn.pos = 0;
        rec.conns[id].processed = conn.consumed;
    }
}

/// Ends a connection the server stopped processing: records where, closes it (or not, for a
/// stall), and reads what the client still writes until it closes.
async fn finish(mut stream: TcpStream, id: usize, shared: &Shared, stop: Stop, processed: usize) {
    {
        let mut rec = shared.record();
        rec.conns[id].processed = processed;
        rec.conns[id].stop = Some(stop);
    }
    match stop {
        Stop::Abort => {
            let _ = stream.set_zero_linger();
            return; // dropped: RST
        }
        Stop::Stall => {
            // Not even reading (so a large write blocks), until the test has every outcome
            // of the round; then what the client wrote is read into the record.
            let round = shared.record().conns[id].round;
            let mut done = shared.round_done.subscribe();
            let _ = done.wait_for(|&d| d >= round).await;
        }
        Stop::Drop | Stop::Closed421 | Stop::Quit => {
            let _ = stream.shutdown().await;
        }
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => shared.record().conns[id].raw.extend_from_slice(&buf[..n]),
        }
    }
}

enum Mode {
    Command,
    /// In DATA: what was received so far (stuffed), and the expected payload length.
    Data {
        got: Vec<u8>,
        expect: Option<usize>,
    },
    /// In a `BDAT` chunk of `size` bytes; `valid`: a transaction with a recipient is open.
    Bdat {
        size: usize,
        got: Vec<u8>,
        valid: bool,
    },
}

/// One connection's state while the server processes it.
struct Conn<'a> {
    id: usize,
    shared: &'a Shared,
    round: u8,
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` processed.
    pos: usize,
    /// Bytes processed before `inbuf`'s start.
    consumed: usize,
    mode: Mode,
    /// The transaction the commands belong to (the last MAIL's, until RSET or its end).
    txn: Option<usize>,
    /// A MAIL was accepted and its transaction has not ended.
    open: bool,
    out: Vec<u8>,
}

/// What a reply turned out to be, after the fault had its say.
struct Sent {
    code: u16,
    stop: Option<Stop>,
}

impl Sent {
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

impl<'a> Conn<'a> {
    fn new(id: usize, shared: &'a Shared) -> Self {
        Conn {
            id,
            shared,
            round: shared.round.load(Ordering::SeqCst),
            inbuf: Vec::new(),
            pos: 0,
            consumed: 0,
            mode: Mode::Command,
            txn: None,
            open: false,
            out: Vec::new(),
        }
    }

    fn greet(&mut self, rec: &mut Record) -> Option<Stop> {
        self.reply(
            rec,
            "greeting",
            220,
            "220 fault-sweep.test ESMTP\r\n",
            false,
            None,
        )
        .stop
    }

    /// Sends a reply (`text`, whose code is `code`) unless the fault changes it; records a
    /// negative one against `txn` (or the session). `rcpt`: a reply to RCPT (a refusal then
    /// names the mailbox).
    fn reply(
        &mut self,
        rec: &mut Record,
        what: &str,
        code: u16,
        text: &str,
        rcpt: bool,
        txn: Option<usize>,
    ) -> Sent {
        let (code, text, stop) = match rec.reply_event(self.id, what) {
            None => (code, text, None),
            Some(Action::Drop) => (code, text, Some(Stop::Drop)),
            Some(Action::Abort) => (code, text, Some(Stop::Abort)),
            Some(Action::Stall) => {
                return Sent {
                    code: 0,
                    stop: Some(Stop::Stall),
                }
            }
            Some(Action::Close421) => (
                421,
                "421 4.3.2 fault-sweep.test closing the session\r\n",
                Some(Stop::Closed421),
            ),
            Some(Action::Refuse4xx) if rcpt => (450, "450 4.2.1 mailbox busy\r\n", None),
            Some(Action::Refuse4xx) => (451, "451 4.3.0 try again later\r\n", None),
            Some(Action::Refuse5xx) if rcpt => (550, "550 5.1.1 no such mailbox\r\n", None),
            Some(Action::Refuse5xx) => (554, "554 5.7.1 refused by policy\r\n", None),
        };
        self.out.extend_from_slice(text.as_bytes());
        rec.log(format!(
            "c{} S: {}",
            self.id,
            text.trim_end().replace("\r\n", " | ")
        ));
        if code >= 400 {
            match txn {
                Some(t) => rec.txns[t].codes.push(code),
                None => rec.session_codes.push((self.round, code)),
            }
        }
        Sent { code, stop }
    }

    /// The scripted refusal of the message transaction `txn` carries.
    fn scripted(&self, rec: &Record, txn: Option<usize>) -> Option<Refusal> {
        let msg = rec.txns[txn?].msg?;
        self.shared.messages[msg].refusal
    }

    /// A point of the client's stream: where the fault may stop the server.
    fn point(&mut self, rec: &mut Record, what: &str) -> Option<Stop> {
        match rec.point_event(self.id, what)? {
            Action::Abort => Some(Stop::Abort),
            Action::Stall => Some(Stop::Stall),
            _ => Some(Stop::Drop),
        }
    }

    /// Processes what was read, as far as it goes; `Some` when the connection is to end.
    fn process(&mut self, rec: &mut Record) -> Option<Stop> {
        loop {
            let stop = match std::mem::replace(&mut self.mode, Mode::Command) {
                Mode::Command => {
                    let rest = &self.inbuf[self.pos..];
                    let nl = rest.windows(2).position(|w| w == b"\r\n")?;
                    let line = String::from_utf8_lossy(&rest[..nl]).into_owned();
                    self.pos += nl + 2;
                    rec.log(format!("c{} C: {line}", self.id));
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    match self.point(rec, &format!("read {verb}")) {
                        Some(stop) => Some(stop),
                        None => self.command(rec, &line, &verb),
                    }
                }
                Mode::Data { got, expect } => match self.data(rec, got, expect) {
                    Ok(stop) => stop,
                    Err(()) => return None, // more bytes needed
                },
                Mode::Bdat { size, got, valid } => match self.bdat(rec, size, got, valid) {
                    Ok(stop) => stop,
                    Err(()) => return None,
                },
            };
            if stop.is_some() {
                return stop;
            }
        }
    }

    fn command(&mut self, rec: &mut Record, line: &str, verb: &str) -> Option<Stop> {
        let txn = self.txn;
        match verb {
            "EHLO" => {
                let text = self.shared.ehlo.clone();
                self.reply(rec, "EHLO", 250, &text, false, None).stop
            }
            "HELO" => {
                self.reply(rec, "HELO", 250, "250 fault-sweep.test\r\n", false, None)
                    .stop
            }
            "MAIL" => {
                if self.open {
                    return self
                        .reply(rec, "MAIL", 503, "503 5.5.1 nested MAIL\r\n", false, txn)
                        .stop;
                }
                let sender = angle(line);
                let msg = self.shared.messages.iter().position(|m| m.sender == sender);
                rec.txns.push(Txn {
                    msg,
                    conn: self.id,
                    round: self.round,
                    rcpts: Vec::new(),
                    got_354: false,
                    end_written: false,
                    end_complete: false,
                    end_reply: None,
                    codes: Vec::new(),
                    rcpts_seen: 0,
                    message_id: None,
                });
                let t = rec.txns.len() - 1;
                self.txn = Some(t);
                let sent = self.reply(rec, "MAIL", 250, "250 2.1.0 sender ok\r\n", false, Some(t));
                self.open = sent.positive();
                sent.stop
            }
            "RCPT" => {
                if !self.open {
                    return self
                        .reply(rec, "RCPT", 503, "503 5.5.1 MAIL first\r\n", true, txn)
                        .stop;
                }
                let seen = txn.map_or(0, |t| {
                    rec.txns[t].rcpts_seen += 1;
                    rec.txns[t].rcpts_seen - 1
                });
                let (code, text) = match self.scripted(rec, txn) {
                    Some(Refusal::Rcpt(n)) if n == seen => (550, SCRIPTED_550),
                    _ => (250, "250 2.1.5 recipient ok\r\n"),
                };
                let sent = self.reply(rec, "RCPT", code, text, true, txn);
                if sent.positive() {
                    if let Some(t) = txn {
                        rec.txns[t].rcpts.push(angle(line));
                    }
                }
                sent.stop
            }
            "DATA" => {
                let has_rcpt = txn.is_some_and(|t| !rec.txns[t].rcpts.is_empty());
                if !self.open {
                    return self
                        .reply(rec, "DATA", 503, "503 5.5.1 MAIL first\r\n", false, txn)
                        .stop;
                }
                if !has_rcpt {
                    let text = "554 5.5.1 no valid recipients\r\n";
                    return self.reply(rec, "DATA", 554, text, false, txn).stop;
                }
                let (code, text) = match self.scripted(rec, txn) {
                    Some(Refusal::Data) => (451, "451 4.3.0 not now (scripted)\r\n"),
                    _ => (354, "354 end with <CRLF>.<CRLF>\r\n"),
                };
                let sent = self.reply(rec, "DATA", code, text, false, txn);
                if sent.code == 354 {
                    let expect = txn
                        .and_then(|t| rec.txns[t].msg)
                        .map(|m| self.shared.messages[m].data_len);
                    if let Some(t) = txn {
                        rec.txns[t].got_354 = true;
                    }
                    self.mode = Mode::Data {
                        got: Vec::new(),
                        expect,
                    };
                }
                sent.stop
            }
            "BDAT" => {
                let mut words = line.split(' ').skip(1);
                let size = words.next().and_then(|s| s.parse::<usize>().ok());
                let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
                let Some(size) = size.filter(|_| last) else {
                    // The client only ever sends one `BDAT n LAST` per message.
                    let text = "501 5.5.4 only BDAT n LAST here\r\n";
                    let _ = self.reply(rec, "BDAT", 501, text, false, txn);
                    return Some(Stop::Drop);
                };
                let valid = self.open && txn.is_some_and(|t| !rec.txns[t].rcpts.is_empty());
                self.mode = Mode::Bdat {
                    size,
                    got: Vec::with_capacity(size),
                    valid,
                };
                None
            }
            "RSET" => {
                rec.rsets += 1;
                let sent = self.reply(rec, "RSET", 250, "250 2.0.0 reset\r\n", false, None);
                if sent.positive() {
                    self.open = false;
                    self.txn = None;
                }
                sent.stop
            }
            "NOOP" => {
                self.reply(rec, "NOOP", 250, "250 2.0.0 ok\r\n", false, None)
                    .stop
            }
            "QUIT" => {
                let sent = self.reply(rec, "QUIT", 221, "221 2.0.0 bye\r\n", false, None);
                Some(sent.stop.unwrap_or(Stop::Quit))
            }
            _ => {
                self.reply(rec, verb, 500, "500 5.5.2 unknown command\r\n", false, None)
                    .stop
            }
        }
    }

    /// DATA, up to the next cut or the end of data at a time (a cut lands on its byte):
    /// `Err` when more bytes are needed.
    fn data(
        &mut self,
        rec: &mut Record,
        mut got: Vec<u8>,
        expect: Option<usize>,
    ) -> Result<Option<Stop>, ()> {
        loop {
            let available = self.inbuf.len() - self.pos;
            if available == 0 {
                self.mode = Mode::Data { got, expect };
                return Err(());
            }
            let cuts = expect.map(|e| {
                [
                    (1, "the first byte of the payload"),
                    (e / 2, "half the payload"),
                    (e, "the payload, no `.`"),
                    (e + 1, "`\\r\\n.`"),
                    (e + 2, "`\\r\\n.\\r`"),
                ]
            });
            let next_cut = cuts
                .into_iter()
                .flatten()
                .filter(|&(at, _)| at > got.len())
                .min_by_key(|&(at, _)| at);
            let take = next_cut.map_or(available, |(at, _)| (at - got.len()).min(available));
            let before = got.len();
            let from = before.saturating_sub(4);
            got.extend_from_slice(&self.inbuf[self.pos..self.pos + take]);
            let end = if got.starts_with(b".\r\n") {
                Some(3) // an empty payload
            } else {
                static END: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
                let end = END.get_or_init(|| memchr::memmem::Finder::new(b"\r\n.\r\n"));
                end.find(&got[from..]).map(|p| from + p + 5)
            };
            if let (Some(e), Some(t)) = (expect, self.txn) {
                rec.txns[t].end_written |= got.len() > e;
            }
            let Some(end) = end else {
                self.pos += take;
                if let Some((at, what)) = next_cut.filter(|&(at, _)| at == got.len()) {
                    debug_assert!(at > before);
                    if let Some(stop) = self.point(rec, what) {
                        return Ok(Some(stop));
                    }
                }
                continue;
            };
            got.truncate(end);
            self.pos += end - before;
            let t = self.txn;
            if let Some(t) = t {
                rec.txns[t].end_complete = true;
                rec.txns[t].message_id = message_id(&got);
            }
            self.open = false;
            rec.log(format!("c{} C: <{} bytes of data> .", self.id, got.len()));
            if let Some(stop) = self.point(rec, "the whole `.`") {
                return Ok(Some(stop));
            }
            let (code, text) = match self.scripted(rec, t) {
                Some(Refusal::End) => (554, SCRIPTED_554),
                _ => (250, "250 2.0.0 queued\r\n"),
            };
            let sent = self.reply(rec, "end of data", code, text, false, t);
            if let Some(t) = t {
                rec.txns[t].end_reply = Some(sent.code).filter(|&c| c != 0);
            }
            return Ok(sent.stop);
        }
    }

    /// A `BDAT … LAST` chunk: `Err` when more bytes are needed.
    fn bdat(
        &mut self,
        rec: &mut Record,
        size: usize,
        mut got: Vec<u8>,
        valid: bool,
    ) -> Result<Option<Stop>, ()> {
        loop {
            let half = size / 2;
            let next_cut = if got.len() < half { half } else { size };
            let available = self.inbuf.len() - self.pos;
            let take = (next_cut - got.len()).min(available);
            if take == 0 && got.len() < size {
                self.mode = Mode::Bdat { size, got, valid };
                return Err(());
            }
            got.extend_from_slice(&self.inbuf[self.pos..self.pos + take]);
            self.pos += take;
            if got.len() == half && half > 0 && take > 0 {
                if let Some(stop) = self.point(rec, "half the BDAT chunk") {
                    return Ok(Some(stop));
                }
            }
            if got.len() < size {
                continue;
            }
            let t = self.txn;
            if let Some(t) = t {
                rec.txns[t].end_written = true;
            }
            if let (true, Some(t)) = (valid, t) {
                rec.txns[t].end_complete = true;
                rec.txns[t].message_id = message_id(&got);
            }
            rec.log(format!("c{} C: <BDAT chunk of {size} bytes>", self.id));
            if let Some(stop) = self.point(rec, "the whole BDAT chunk") {
                return Ok(Some(stop));
            }
            let sent = if valid {
                let (code, text) = match self.scripted(rec, t) {
                    Some(Refusal::End) => (554, SCRIPTED_554),
                    _ => (250, "250 2.0.0 queued\r\n"),
                };
                self.reply(rec, "BDAT", code, text, false, t)
            } else if self.open {
                let text = "554 5.5.1 no valid recipients\r\n";
                self.reply(rec, "BDAT", 554, text, false, t)
            } else {
                self.reply(rec, "BDAT", 503, "503 5.5.1 MAIL first\r\n", false, t)
            };
            if let (true, Some(t)) = (valid, t) {
                rec.txns[t].end_reply = Some(sent.code).filter(|&c| c != 0);
            }
            // The last chunk ends the transaction, accepted or not (RFC 3030).
            self.open = false;
            return Ok(sent.stop);
        }
    }
}

const SCRIPTED_550: &str = "550 5.1.1 no such mailbox (scripted)\r\n";
const SCRIPTED_554: &str = "554 5.7.1 message refused (scripted)\r\n";

/// The address between `<` and `>` in a MAIL or RCPT line.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

/// The Message-ID header of a message (without angle brackets).
fn message_id(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&data[..data.len().min(64 * 1024)]);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_matches(['<', '>']).to_string())
    })
}
