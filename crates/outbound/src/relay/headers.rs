//! What the relay adds at the top of a message on its way to the spool, and what it reads
//! from the header section: a `Received:` field (RFC 5321 section 4.4), and `Message-ID:`
//! and `Date:` when the client left them out (RFC 6409 sections 8.2, 8.3); the client's
//! `Message-ID`, and its `From:`/`Sender:` addresses for the user's sender patterns.
//!
//! The header section is held until its end (the first empty line), at most
//! `max_header_section` octets; the body streams through. Everything the client sent is kept
//! byte for byte after the added fields.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::spool::MessageFacts;

/// What the `Received:` field says about the session.
pub(crate) struct Trace<'a> {
    pub helo: &'a str,
    pub client: IpAddr,
    pub host: &'a str,
    pub extended: bool,
    pub tls: bool,
    pub authenticated: bool,
    pub id: &'a str,
    pub at: SystemTime,
}

/// Adds the relay's fields before the client's header section and reads it.
pub(crate) struct Stamper {
    received: Vec<u8>,
    host: String,
    at: SystemTime,
    head: Vec<u8>,
    limit: usize,
    scanned: usize,
    head_done: bool,
    facts: Option<HeadFacts>,
    written: u64,
}

/// What the header section held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeadFacts {
    pub message_id: String,
    pub added_message_id: bool,
    pub added_date: bool,
    /// Addresses in `From:` and `Sender:`.
    pub authors: Vec<String>,
    /// A `From:` or `Sender:` field none of whose text parsed as an address.
    pub unreadable_author: bool,
}

impl Stamper {
    pub(crate) fn new(trace: &Trace<'_>, limit: usize) -> Self {
        Stamper {
            received: received_field(trace).into_bytes(),
            host: trace.host.to_string(),
            at: trace.at,
            head: Vec::new(),
            limit: limit.max(1),
            scanned: 0,
            head_done: false,
            facts: None,
            written: 0,
        }
    }

    /// Takes the next bytes of the message; appends to `out` what can be written now.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.head_done {
            self.written += bytes.len() as u64;
            out.extend_from_slice(bytes);
            return;
        }
        self.head.extend_from_slice(bytes);
        // Look for the empty line from a little before where the last search stopped.
        let from = self.scanned.saturating_sub(3);
        let end = if self.head.starts_with(b"\r\n") {
            Some(0)
        } else {
            memchr::memmem::find(&self.head[from..], b"\r\n\r\n").map(|p| from + p + 2)
        };
        match end {
            Some(end) => self.finish_head(end, out),
            None if self.head.len() >= self.limit => self.finish_head(self.head.len(), out),
            None => self.scanned = self.head.len(),
        }
    }

    /// The message ended: writes what was held.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.head_done {
            let len = self.head.len();
            self.finish_head(len, out);
        }
    }

    /// The header section's facts (once [`Stamper::finish`] ran, or the section ended).
    pub(crate) fn head_facts(&self) -> Option<&HeadFacts> {
        self.facts.as_ref()
    }

    /// The facts for the spool.
    pub(crate) fn message_facts(&self) -> MessageFacts {
        let facts = self.facts.clone().unwrap_or_default();
        MessageFacts {
            message_id: facts.message_id,
            added_message_id: facts.added_message_id,
            added_date: facts.added_date,
            size: self.written,
        }
    }

    /// `end`: where the header section ends in `head` (its fields, with their last CRLF).
    fn finish_head(&mut self, end: usize, out: &mut Vec<u8>) {
        let head = std::mem::take(&mut self.head);
        let mut facts = read_head(&head[..end]);
        let mut added = self.received.clone();
        if facts.message_id.is_empty() {
            facts.message_id = new_message_id(&self.host);
            facts.added_message_id = true;
            added.extend_from_slice(format!("Message-ID: {}\r\n", facts.message_id).as_bytes());
        }
        if facts.added_date {
            added.extend_from_slice(format!("Date: {}\r\n", rfc5322_date(self.at)).as_bytes());
        }
        self.written += (added.len() + head.len()) as u64;
        out.extend_from_slice(&added);
        out.extend_from_slice(&head);
        self.facts = Some(facts);
        self.head_done = true;
    }
}

/// Reads Message-ID, Date, From and Sender from a header section.
fn read_head(head: &[u8]) -> HeadFacts {
    let mut facts = HeadFacts {
        added_date: true,
        ..HeadFacts::default()
    };
    let mut has_author_field = false;
    for (name, value) in fields(head) {
        if name.eq_ignore_ascii_case(b"message-id") && facts.message_id.is_empty() {
            facts.message_id = String::from_utf8_lossy(&value).trim().to_string();
            if facts.message_id.is_empty() {
                // An empty field still counts as one: never add a second.
                facts.message_id = "<>".into();
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            facts.added_date = false;
        } else if name.eq_ignore_ascii_case(b"from") || name.eq_ignore_ascii_case(b"sender") {
            has_author_field = true;
        }
    }
    if has_author_field {
        let parsed = mail_parser::MessageParser::default().parse_headers(head);
        let mut authors = Vec::new();
        if let Some(parsed) = &parsed {
            for list in [parsed.from(), parsed.sender()].into_iter().flatten() {
                authors.extend(list.iter().filter_map(|a| a.address().map(str::to_string)));
            }
        }
        facts.unreadable_author = authors.is_empty();
        facts.authors = authors;
    }
    facts
}

/// The header fields as (name, unfolded raw value), in order.
fn fields(head: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = out.last_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line[..colon].trim_ascii_end();
            out.push((name, line[colon + 1..].to_vec()));
        }
    }
    out
}

fn received_field(t: &Trace<'_>) -> String {
    let helo: String = t
        .helo
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '(' && c != ')' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ip = match t.client.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    // RFC 3848's protocol names: ESMTP, then S for TLS and A for AUTH.
    let with = match (t.extended, t.tls, t.authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    format!(
        "Received: from {helo} ({ip})\r\n\tby {} (outbound relay) with {with} id {};\r\n\t{}\r\n",
        t.host,
        t.id,
        rfc5322_date(t.at)
    )
}

fn rfc5322_date(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    mail_builder::headers::date::Date::new(secs).to_rfc822()
}

/// `<128 random bits in hex @ host>`.
fn new_message_id(host: &str) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: the time in nanoseconds still makes a unique left part here.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_be_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{host}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> Trace<'static> {
        Trace {
            helo: "client (x)",
            client: "::ffff:192.0.2.1".parse().unwrap(),
            host: "relay.example",
            extended: true,
            tls: true,
            authenticated: true,
            id: "Q1",
            at: UNIX_EPOCH,
        }
    }

    fn stamp(message: &[u8], step: usize, limit: usize) -> (Vec<u8>, HeadFacts, MessageFacts) {
        let mut s = Stamper::new(&trace(), limit);
        let mut out = Vec::new();
        for chunk in message.chunks(step) {
            s.push(chunk, &mut out);
        }
        s.finish(&mut out);
        (out, s.head_facts().cloned().unwrap(), s.message_facts())
    }

    #[test]
    fn adds_what_is_missing_and_keeps_the_rest() {
        let msg = b"From: A <a@example.com>\r\nSubject: hi\r\n\r\nbody\r\n";
        for step in [1, 3, 100] {
            let (out, head, facts) = stamp(msg, step, 1 << 20);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.starts_with("Received: from client__x_ ([192.0.2.1])\r\n\tby relay.example (outbound relay) with ESMTPSA id Q1;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"), "{text}");
            assert!(
                text.contains("@relay.example>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\nFrom: A")
            );
            assert!(out.ends_with(msg));
            assert!(head.added_message_id && head.added_date);
            assert_eq!(head.authors, ["a@example.com"]);
            assert_eq!(facts.size, out.len() as u64);
            assert!(
                facts.message_id.starts_with('<') && facts.message_id.ends_with("@relay.example>")
            );
        }
    }

    #[test]
    fn keeps_the_clients_own() {
        let msg = b"message-id:\r\n <abc@x.example>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\nSender: s@example.org\r\n\r\nFrom: not@header.example\r\n";
        let (out, head, facts) = stamp(msg, 7, 1 << 20);
        assert!(!head.added_message_id && !head.added_date);
        assert_eq!(facts.message_id, "<abc@x.example>");
        assert_eq!(head.authors, ["s@example.org"]);
        // The Received field's three lines, then the client's six.
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3 + 6);
    }

    #[test]
    fn headers_only_and_long_head() {
        let (out, head, _) = stamp(b"Subject: no body\r\n", 5, 1 << 20);
        assert!(head.added_message_id);
        assert!(out.ends_with(b"Subject: no body\r\n"));
        // Past the limit the header section is taken as ended.
        let long = format!("X-A: {}\r\nMessage-ID: <late@x>\r\n\r\n", "a".repeat(100));
        let (_, head, _) = stamp(long.as_bytes(), 10, 50);
        assert!(head.added_message_id);
        let (out, head, _) = stamp(b"\r\nno header section\r\n", 4, 1 << 20);
        assert!(head.added_message_id && out.ends_with(b"\r\n\r\nno header section\r\n"));
    }

    #[test]
    fn unreadable_from() {
        let (_, head, _) = stamp(b"From: nobody at all\r\n\r\nx\r\n", 100, 1 << 20);
        assert!(head.unreadable_author, "{head:?}");
    }
}
