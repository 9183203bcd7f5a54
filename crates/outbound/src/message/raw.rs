//! Complete RFC 5322 messages given as bytes (`outbound send --raw`, sendmail style).

use std::time::{SystemTime, UNIX_EPOCH};

use super::text::normalize_newlines_bytes;
use super::{Mailbox, MessageError};

/// RFC 5322 section 2.1.1: a line is at most 998 octets, excluding CRLF.
const MAX_LINE: usize = 998;

pub(crate) struct Prepared {
    pub bytes: Vec<u8>,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub message_id: Option<String>,
}

fn fail(reason: impl Into<String>) -> MessageError {
    MessageError::InvalidRaw {
        reason: reason.into(),
    }
}

/// Normalises line endings, checks line lengths, reads the addresses and removes `Bcc`.
pub(crate) fn prepare(input: &[u8]) -> Result<Prepared, MessageError> {
    let bytes = normalize_newlines_bytes(input);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(fail("it is empty"));
    }
    let header_end = find_header_end(&bytes);
    let mut offset = 0;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        // RFC 5322 forbids NUL anywhere, and servers disagree about it (Postfix cuts a header
        // at it silently); a header field must also be free of other control characters but
        // tab.
        let in_header = offset < header_end;
        offset += line.len() + 1;
        if let Some(pos) = line.iter().position(|&b| b == 0) {
            return Err(fail(format!(
                "line {} has a NUL byte at column {}; RFC 5322 forbids NUL anywhere in a message",
                n + 1,
                pos + 1
            )));
        }
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header {
            if let Some(pos) = body
                .iter()
                .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                return Err(fail(format!(
                    "header line {} has the control character 0x{:02x} at column {}; header \
                     fields may hold only printable characters, spaces and tabs",
                    n + 1,
                    body[pos],
                    pos + 1
                )));
            }
        }
        let len = body.len();
        if len > MAX_LINE {
            return Err(fail(format!(
                "line {} is {len} octets long; RFC 5322 allows at most {MAX_LINE} \
                 (encode the body with quoted-printable or base64)",
                n + 1
            )));
        }
    }
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let looks_like_header = first
        .iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| colon > 0 && first[..colon].iter().all(|&b| (33..=126).contains(&b)));
    if !looks_like_header {
        return Err(fail(
            "it does not start with a header line such as `From: a@example.com`",
        ));
    }

    let parsed = mail_parser::MessageParser::default()
        .parse_headers(&bytes[..header_end])
        .ok_or_else(|| fail("its header section could not be parsed"))?;
    let list = |addr: Option<&mail_parser::Address<'_>>,
                field: &str|
     -> Result<Vec<Mailbox>, MessageError> {
        let Some(addr) = addr else {
            return Ok(Vec::new());
        };
        addr.iter()
            .filter_map(|a| a.address().map(|e| (a.name(), e)))
            .map(|(name, email)| Mailbox::parse_parts_for(name, email, field))
            .collect()
    };
    let from = list(parsed.from(), "from")?.into_iter().next();
    let to = list(parsed.to(), "to")?;
    let cc = list(parsed.cc(), "cc")?;
    let bcc = list(parsed.bcc(), "bcc")?;
    let message_id = parsed.message_id().map(str::to_string);

    let bytes = remove_header(&bytes, header_end, "bcc");
    Ok(Prepared {
        bytes,
        from,
        to,
        cc,
        bcc,
        message_id,
    })
}

/// Adds `Message-ID` and `Date` when the message lacks them.
pub(crate) fn finish(
    raw: &[u8],
    message_id: &str,
    date: SystemTime,
) -> Result<Vec<u8>, MessageError> {
    let header_end = find_header_end(raw);
    let has = |name: &str| header_names(&raw[..header_end]).any(|n| n.eq_ignore_ascii_case(name));
    let mut out = Vec::with_capacity(raw.len() + 128);
    if !has("message-id") {
        out.extend_from_slice(format!("Message-ID: {message_id}\r\n").as_bytes());
    }
    if !has("date") {
        let secs = date
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let date = mail_builder::headers::date::Date::new(secs).to_rfc822();
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    out.extend_from_slice(raw);
    Ok(out)
}

/// Offset just past the blank line ending the header section (or the end when there is none).
fn find_header_end(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(bytes.len())
}

fn header_names(headers: &[u8]) -> impl Iterator<Item = &str> {
    headers
        .split(|&b| b == b'\n')
        .filter(|l| !l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
        .filter_map(|l| l.iter().position(|&b| b == b':').map(|c| &l[..c]))
        .filter_map(|n| std::str::from_utf8(n).ok())
}

/// Drops every occurrence of header `name` (with its folded continuation lines).
fn remove_header(bytes: &[u8], header_end: usize, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut skipping = false;
    let (headers, body) = bytes.split_at(header_end);
    for line in headers.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|c| line[..c].eq_ignore_ascii_case(name.as_bytes()));
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_bcc_and_reads_addresses() {
        let raw = b"From: A <a@example.com>\nTo: b@example.com, C <c@example.com>\nBcc: hidden@example.com,\n  also@example.com\nSubject: x\n\nbody\n";
        let p = prepare(raw).unwrap();
        assert_eq!(p.from.unwrap().email(), "a@example.com");
        assert_eq!(p.to.len(), 2);
        assert_eq!(p.bcc.len(), 2);
        let text = String::from_utf8(p.bytes).unwrap();
        assert!(!text.to_ascii_lowercase().contains("bcc"), "{text}");
        assert!(!text.contains("also@"));
        assert!(text.contains("Subject: x\r\n\r\nbody\r\n"));
    }

    #[test]
    fn refuses_long_lines_and_headerless_input() {
        let long = format!("From: a@example.com\r\n\r\n{}\r\n", "x".repeat(999));
        assert!(matches!(
            prepare(long.as_bytes()),
            Err(MessageError::InvalidRaw { .. })
        ));
        assert!(prepare(b"just text\n").is_err());
        assert!(prepare(b"").is_err());
    }
}
