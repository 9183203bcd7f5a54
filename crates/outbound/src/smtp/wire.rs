//! What goes onto the wire: SMTP command lines, the DATA payload (dot-stuffed, CRLF only), the
//! redacted form of each line for the wire log, and counters that show how the client used the
//! connection (how many commands went out per network write, i.e. whether it pipelined).
//!
//! `smtp-proto` parses what servers say; it has no client-side serialiser, so the few command
//! lines a client sends are written here. Tests parse them back with `smtp-proto`'s server-side
//! request parser to prove they are well formed.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use secrecy::{ExposeSecret, SecretString};

use super::auth::Mechanism;

/// One command the client sends.
pub(crate) enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    StartTls,
    /// `AUTH <mechanism> [initial-response]`; the initial response is never logged.
    Auth {
        mechanism: Mechanism,
        initial: Option<&'a SecretString>,
    },
    /// A line answering a 334 challenge (base64, or `*` to cancel); never logged.
    SaslResponse(&'a SecretString),
    Mail(MailFrom<'a>),
    Rcpt(&'a str),
    Data,
    /// RFC 3030 `BDAT <size> LAST`: the whole message as one chunk, following at once.
    BdatLast(usize),
    Rset,
    Quit,
}

/// `MAIL FROM` and its parameters.
pub(crate) struct MailFrom<'a> {
    pub address: &'a str,
    /// RFC 1870 `SIZE=`; sent only when the server advertised SIZE.
    pub size: Option<usize>,
    /// RFC 6152 `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// RFC 6531 `SMTPUTF8`.
    pub smtputf8: bool,
}

impl Command<'_> {
    /// The command's name, for messages ("the reply to RCPT TO").
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::SaslResponse(_) => "AUTH",
            Command::Mail(_) => "MAIL FROM",
            Command::Rcpt(_) => "RCPT TO",
            Command::Data => "DATA",
            Command::BdatLast(_) => "BDAT",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
        }
    }

    /// Appends the command line, CRLF included, to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Command::Ehlo(name) => push(out, &["EHLO ", name]),
            Command::Helo(name) => push(out, &["HELO ", name]),
            Command::StartTls => push(out, &["STARTTLS"]),
            Command::Auth { mechanism, initial } => match initial {
                Some(ir) => {
                    let ir = ir.expose_secret();
                    // RFC 4954 section 4: a zero-length initial response is sent as "=".
                    let ir = if ir.is_empty() { "=" } else { ir };
                    push(out, &["AUTH ", mechanism.as_str(), " ", ir]);
                }
                None => push(out, &["AUTH ", mechanism.as_str()]),
            },
            Command::SaslResponse(line) => push(out, &[line.expose_secret()]),
            Command::Mail(m) => {
                out.extend_from_slice(b"MAIL FROM:<");
                out.extend_from_slice(m.address.as_bytes());
                out.push(b'>');
                if let Some(size) = m.size {
                    out.extend_from_slice(format!(" SIZE={size}").as_bytes());
                }
                if m.eight_bit {
                    out.extend_from_slice(b" BODY=8BITMIME");
                }
                if m.smtputf8 {
                    out.extend_from_slice(b" SMTPUTF8");
                }
                out.extend_from_slice(b"\r\n");
            }
            Command::Rcpt(address) => push(out, &["RCPT TO:<", address, ">"]),
            Command::Data => push(out, &["DATA"]),
            Command::BdatLast(size) => push(out, &["BDAT ", &size.to_string(), " LAST"]),
            Command::Rset => push(out, &["RSET"]),
            Command::Quit => push(out, &["QUIT"]),
        }
    }

    /// The line as it may appear in logs: credentials and SASL payloads are replaced by
    /// `<redacted>`.
    pub(crate) fn log_line(&self) -> String {
        match self {
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => format!("AUTH {mechanism} <redacted>"),
            Command::SaslResponse(_) => "<redacted SASL response>".to_string(),
            other => {
                let mut line = Vec::new();
                other.write_to(&mut line);
                let line = String::from_utf8_lossy(&line);
                line.trim_end().to_string()
            }
        }
    }
}

fn push(out: &mut Vec<u8>, parts: &[&str]) {
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `address` can go inside `<...>` on a command line: no controls, no brackets, no
/// spaces (the message model already validated it; this guards the wire).
pub(crate) fn is_safe_path(address: &str) -> bool {
    // A quoted local part (RFC 5321 `Quoted-string`, e.g. `"john doe"@example.com`) may hold
    // spaces; nothing else may, and nothing may hold controls or angle brackets.
    let unquoted_rest = match address.strip_prefix('"') {
        Some(rest) => match quoted_end(rest) {
            Some(end) if rest[end..].starts_with("\"@") => &rest[end + 1..],
            _ => return false,
        },
        None => address,
    };
    !address.is_empty()
        && address.len() <= 512
        && !address
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>')
        && !unquoted_rest.contains(' ')
}

/// The index of the closing `"` of a quoted string whose opening `"` was just before `s`.
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// The DATA payload for `message`: lines end in CRLF (a bare CR or LF becomes CRLF), a line
/// starting with `.` gets a second `.` (RFC 5321 section 4.5.2), and the payload ends with CRLF.
/// The terminating `.` CRLF is *not* included: the caller sends it separately, so it knows
/// whether a failure happened before or after the end of DATA.
#[cfg(test)]
pub(crate) fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut encoder = DataEncoder::default();
    encoder.encode(message, &mut out);
    encoder.finish(&mut out);
    out
}

/// [`encode_data`] a chunk at a time, so a large message is sent without a second copy of
/// it in memory. The state carries what a chunk boundary may split: a CR whose LF comes in the
/// next chunk, and whether the next byte starts a line.
#[derive(Debug)]
pub(crate) struct DataEncoder {
    at_line_start: bool,
    after_cr: bool,
    wrote_any: bool,
    /// DATA needs dot-stuffing; a BDAT chunk is counted in bytes and must not have it.
    stuff_dots: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder {
            at_line_start: true,
            after_cr: false,
            wrote_any: false,
            stuff_dots: true,
        }
    }
}

/// The content of a `BDAT` chunk for `message`: lines end in CRLF (a bare CR or LF becomes
/// CRLF, as for DATA, so no server sees a bare line ending), no dot-stuffing, and a final CRLF.
pub(crate) fn encode_bdat(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut encoder = DataEncoder {
        stuff_dots: false,
        ..DataEncoder::default()
    };
    encoder.encode(message, &mut out);
    encoder.finish(&mut out);
    out
}

impl DataEncoder {
    /// Appends the encoding of `chunk` to `out`.
    ///
    /// The text between line endings is copied whole (found with `memchr`, a word at a time):
    /// this runs over every byte of every message, and byte-by-byte pushing was a tenth of
    /// the client's CPU per message.
    pub(crate) fn encode(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + 2);
        while let Some(&first) = chunk.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                // The LF of a CRLF whose CR was already written as CRLF.
                chunk = &chunk[1..];
                continue;
            }
            match memchr::memchr2(b'\r', b'\n', chunk) {
                Some(0) => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    self.after_cr = first == b'\r';
                    self.wrote_any = true;
                    chunk = &chunk[1..];
                }
                found => {
                    let (text, rest) = chunk.split_at(found.unwrap_or(chunk.len()));
                    if self.stuff_dots && self.at_line_start && first == b'.' {
                        out.push(b'.');
                    }
                    out.extend_from_slice(text);
                    self.at_line_start = false;
                    self.wrote_any = true;
                    chunk = rest;
                }
            }
        }
    }

    /// Ends the payload with CRLF when it does not already.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.wrote_any && !self.at_line_start {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
    }
}

/// The end-of-data marker.
pub(crate) const END_OF_DATA: &[u8] = b".\r\n";

/// Counters shared by every connection of one transport.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_opened: AtomicU64,
    pub open_connections: AtomicUsize,
    pub max_open_connections: AtomicUsize,
    pub command_writes: AtomicU64,
    pub commands: AtomicU64,
    pub max_commands_per_write: AtomicU64,
    pub transactions: AtomicU64,
    pub reused_connections: AtomicU64,
    pub broken_connections_replaced: AtomicU64,
    pub round_trips: AtomicU64,
    pub pipelined_transactions: AtomicU64,
}

impl Counters {
    pub(crate) fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let now = self.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_open_connections.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// The client waited for the server after writing: one turn of the conversation.
    pub(crate) fn round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn wrote_commands(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.command_writes.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(n, Ordering::Relaxed);
        self.max_commands_per_write.fetch_max(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WireStats {
        WireStats {
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::SeqCst),
            max_open_connections: self.max_open_connections.load(Ordering::SeqCst),
            command_writes: self.command_writes.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            max_commands_per_write: self.max_commands_per_write.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            reused_connections: self.reused_connections.load(Ordering::Relaxed),
            broken_connections_replaced: self.broken_connections_replaced.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            pipelined_transactions: self.pipelined_transactions.load(Ordering::Relaxed),
        }
    }
}

/// How an [`SmtpTransport`](super::SmtpTransport) used the network so far: evidence for
/// pipelining (several commands per write), connection reuse and the connection cap.
///
/// Every command line counts once in `commands`; every network write that carried at least one
/// command line counts once in `command_writes` (the DATA payload and its final `.` are not
/// counted). Without pipelining `commands == command_writes`; with it, one write carries
/// `MAIL FROM`, every `RCPT TO` and `DATA`.
///
/// ```
/// # use outbound::smtp::SmtpTransport;
/// let transport = SmtpTransport::builder("mail.example.com").build()?;
/// let stats = transport.stats();
/// assert_eq!(stats.connections_opened, 0);
/// assert_eq!(stats.commands_per_write(), 0.0);
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireStats {
    /// TCP connections opened (including ones that then failed in TLS, greeting or AUTH).
    pub connections_opened: u64,
    /// Connections open right now (in use or idle in the pool).
    pub open_connections: usize,
    /// The most connections that were open at the same time.
    pub max_open_connections: usize,
    /// Network writes that carried command lines.
    pub command_writes: u64,
    /// Command lines sent.
    pub commands: u64,
    /// The most command lines one write carried.
    pub max_commands_per_write: u64,
    /// Mail transactions completed (accepted by the server).
    pub transactions: u64,
    /// Transactions that ran on a connection kept from an earlier one.
    pub reused_connections: u64,
    /// Idle connections found broken on use and replaced without losing the message.
    pub broken_connections_replaced: u64,
    /// Round trips: how often a connection waited for the server after writing (connection
    /// set-up included). With pipelining across messages a reused connection costs one per
    /// message; without it, two (the envelope, then the payload).
    pub round_trips: u64,
    /// Transactions whose MAIL, RCPT and DATA went out behind the previous message's final
    /// `.` on the same connection (RFC 2920 section 3.1).
    pub pipelined_transactions: u64,
}

impl WireStats {
    /// Average command lines per network write (above 1 means commands were pipelined).
    pub fn commands_per_write(&self) -> f64 {
        if self.command_writes == 0 {
            0.0
        } else {
            self.commands as f64 / self.command_writes as f64
        }
    }
}

impl fmt::Display for WireStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections opened (max {} open at once), {} transactions ({} on reused \
             connections), {} commands in {} writes ({:.2} per write, max {}), {} round trips, \
             {} transactions pipelined behind the previous one",
            self.connections_opened,
            self.max_open_connections,
            self.transactions,
            self.reused_connections,
            self.commands,
            self.command_writes,
            self.commands_per_write(),
            self.max_commands_per_write,
            self.round_trips,
            self.pipelined_transactions
        )
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn line(cmd: &Command<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        cmd.write_to(&mut out);
        out
    }

    fn parse(bytes: &[u8]) -> smtp_proto::Request<Cow<'_, str>> {
        smtp_proto::Request::parse(&mut bytes.iter()).unwrap()
    }

    #[test]
    fn mail_from_with_parameters_parses_back() {
        let bytes = line(&Command::Mail(MailFrom {
            address: "zoë@example.com",
            size: Some(12345),
            eight_bit: true,
            smtputf8: true,
        }));
        assert_eq!(
            bytes,
            "MAIL FROM:<zoë@example.com> SIZE=12345 BODY=8BITMIME SMTPUTF8\r\n".as_bytes()
        );
        match parse(&bytes) {
            smtp_proto::Request::Mail { from } => {
                assert_eq!(from.address, "zoë@example.com");
                assert_eq!(from.size, 12345);
                assert_ne!(from.flags & smtp_proto::MAIL_BODY_8BITMIME, 0);
                assert_ne!(from.flags & smtp_proto::MAIL_SMTPUTF8, 0);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_mail_from_and_rcpt_parse_back() {
        let bytes = line(&Command::Mail(MailFrom {
            address: "a@example.com",
            size: None,
            eight_bit: false,
            smtputf8: false,
        }));
        assert_eq!(bytes, b"MAIL FROM:<a@example.com>\r\n");
        assert!(matches!(parse(&bytes), smtp_proto::Request::Mail { from } if from.flags == 0));
        let bytes = line(&Command::Rcpt("b@example.com"));
        assert_eq!(bytes, b"RCPT TO:<b@example.com>\r\n");
        assert!(
            matches!(parse(&bytes), smtp_proto::Request::Rcpt { to } if to.address == "b@example.com")
        );
        for (cmd, expected) in [
            (Command::Data, "DATA"),
            (Command::Rset, "RSET"),
            (Command::Quit, "QUIT"),
            (Command::StartTls, "STARTTLS"),
            (Command::Ehlo("[127.0.0.1]"), "EHLO"),
        ] {
            let bytes = line(&cmd);
            assert_eq!(parse(&bytes).name(), expected);
        }
    }

    #[test]
    fn auth_lines_are_redacted_in_logs() {
        let secret = SecretString::from("AGFsaWNlAHNlY3JldA==");
        let cmd = Command::Auth {
            mechanism: Mechanism::Plain,
            initial: Some(&secret),
        };
        assert_eq!(line(&cmd), b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(cmd.log_line(), "AUTH PLAIN <redacted>");
        let cmd = Command::SaslResponse(&secret);
        assert!(!cmd.log_line().contains("AGFs"));
        let empty = SecretString::from("");
        let cmd = Command::Auth {
            mechanism: Mechanism::XOAuth2,
            initial: Some(&empty),
        };
        assert_eq!(line(&cmd), b"AUTH XOAUTH2 =\r\n");
        assert_eq!(
            Command::Auth {
                mechanism: Mechanism::Login,
                initial: None
            }
            .log_line(),
            "AUTH LOGIN"
        );
    }

    #[test]
    fn data_is_dot_stuffed_and_crlf_normalised() {
        assert_eq!(encode_data(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n");
        assert_eq!(encode_data(b".start"), b"..start\r\n");
        assert_eq!(encode_data(b"x\n.\ny"), b"x\r\n..\r\ny\r\n");
        assert_eq!(encode_data(b"bare\rcr"), b"bare\r\ncr\r\n");
        assert_eq!(encode_data(b"mid.dot\r\n"), b"mid.dot\r\n");
        // A lone "." line inside the body can never end DATA early.
        let encoded = encode_data(b"Subject: x\r\n\r\n.\r\nafter\r\n");
        assert!(!encoded.windows(5).any(|w| w == b"\r\n.\r\n"));
        assert_eq!(encode_data(b""), b"");
        // Chunk boundaries anywhere give the same bytes: inside CRLF, before a dot.
        let msg = b"a\r\n.b\r\r\n..c\nd\r\n.\r\nend";
        let whole = encode_data(msg);
        for size in 1..msg.len() {
            let mut out = Vec::new();
            let mut e = DataEncoder::default();
            for chunk in msg.chunks(size) {
                e.encode(chunk, &mut out);
            }
            e.finish(&mut out);
            assert_eq!(out, whole, "chunks of {size}");
        }
    }

    /// The byte-at-a-time encoder the fast one replaced: the definition it must agree with.
    fn reference_encoding(message: &[u8], stuff_dots: bool) -> Vec<u8> {
        let (mut out, mut at_line_start, mut after_cr) = (Vec::new(), true, false);
        for &b in message {
            match b {
                b'\n' if after_cr => after_cr = false,
                b'\r' | b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    at_line_start = true;
                    after_cr = b == b'\r';
                }
                _ => {
                    if stuff_dots && at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    (at_line_start, after_cr) = (false, false);
                }
            }
        }
        if !message.is_empty() && !at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn encoding_agrees_with_the_byte_at_a_time_definition_at_any_chunking() {
        // xorshift: deterministic, so a failure names a reproducible case.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ab.\r\n";
        for case in 0..2000 {
            let len = (next() % 40) as usize;
            let msg: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for stuff_dots in [true, false] {
                let chunk = 1 + (next() % 8) as usize;
                let mut e = DataEncoder {
                    stuff_dots,
                    ..DataEncoder::default()
                };
                let mut out = Vec::new();
                for part in msg.chunks(chunk) {
                    e.encode(part, &mut out);
                }
                e.finish(&mut out);
                assert_eq!(
                    out,
                    reference_encoding(&msg, stuff_dots),
                    "case {case}: {:?} in chunks of {chunk}, stuff_dots {stuff_dots}",
                    String::from_utf8_lossy(&msg)
                );
            }
        }
    }

    #[test]
    fn safe_paths() {
        assert!(is_safe_path("a@example.com"));
        assert!(!is_safe_path("a@example.com>\r\nRCPT TO:<b@x"));
        assert!(!is_safe_path("a b@example.com"));
        assert!(is_safe_path("\"john doe\"@example.test"));
        assert!(is_safe_path("\"a\\\" b\"@example.test"));
        assert!(!is_safe_path("\"john doe\"@exa mple.test"));
        assert!(!is_safe_path("\"unterminated@example.test"));
        assert!(!is_safe_path(""));
    }

    #[test]
    fn stats_count_commands_per_write() {
        let c = Counters::default();
        c.wrote_commands(3);
        c.wrote_commands(1);
        c.wrote_commands(0);
        c.connection_opened();
        c.connection_opened();
        c.connection_closed();
        let s = c.snapshot();
        assert_eq!(s.command_writes, 2);
        assert_eq!(s.commands, 4);
        assert_eq!(s.max_commands_per_write, 3);
        assert_eq!(s.open_connections, 1);
        assert_eq!(s.max_open_connections, 2);
        assert!((s.commands_per_write() - 2.0).abs() < f64::EPSILON);
        assert!(s.to_string().contains("2.00 per write"));
    }

    #[test]
    fn bdat_chunks_have_crlf_line_ends_and_no_dot_stuffing() {
        assert_eq!(encode_bdat(b".a\n..b\rc"), b".a\r\n..b\r\nc\r\n");
        assert_eq!(encode_bdat(b"x\r\n.\r\n"), b"x\r\n.\r\n");
        assert_eq!(line(&Command::BdatLast(42)), b"BDAT 42 LAST\r\n");
    }
}
