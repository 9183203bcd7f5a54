//! The input of a bulk run: JSON Lines, one message per line, read as a stream.
//!
//! Each line is an object with the fields of `outbound send` (see [`BulkLine`]). Lines are
//! numbered from 1 as they appear in the file; an empty line is skipped but keeps its number,
//! so line numbers always match what an editor shows.

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind as IoErrorKind};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Attachment, Message, MessageError};

/// The longest line read (32 MiB); a longer line is malformed and skipped without being kept
/// in memory.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// One string or a list of strings (`"to": "a@example.com"` or `"to": ["a@…", "b@…"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

/// An attachment: a path, or `{"path": "logo.png", "inline": "logo"}` for an inline part the
/// HTML shows with `<img src="cid:logo">`. Relative paths are relative to the input file's
/// directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AttachmentSpec {
    /// A file attached as it is.
    Path(PathBuf),
    /// A file with options.
    Detailed {
        /// The file.
        path: PathBuf,
        /// The Content-ID for an inline part.
        #[serde(default)]
        inline: Option<String>,
    },
}

/// One line of the input: the fields of `outbound send`. Unknown fields are refused (a typo
/// such as `"subjet"` must not send a message without a subject).
///
/// ```
/// use outbound::bulk::BulkLine;
/// let line: BulkLine = serde_json::from_str(
///     r#"{"to": ["ada@example.com", "bob@example.com"], "subject": "Hi", "text": "Hello"}"#,
/// ).unwrap();
/// let message = line.to_message(None, std::path::Path::new("."))?;
/// assert_eq!(message.to().len(), 2);
/// # Ok::<(), outbound::MessageError>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkLine {
    /// Recipients.
    #[serde(default)]
    pub to: Option<OneOrMany>,
    /// Cc recipients.
    #[serde(default)]
    pub cc: Option<OneOrMany>,
    /// Bcc recipients (never written into the message).
    #[serde(default)]
    pub bcc: Option<OneOrMany>,
    /// The sender (default: the configured default sender).
    #[serde(default)]
    pub from: Option<String>,
    /// Reply-To addresses.
    #[serde(default)]
    pub reply_to: Option<OneOrMany>,
    /// The subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// HTML body.
    #[serde(default)]
    pub html: Option<String>,
    /// Plain-text body.
    #[serde(default)]
    pub text: Option<String>,
    /// Extra headers, `{"X-Campaign": "welcome"}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Files to attach.
    #[serde(default)]
    pub attachments: Vec<AttachmentSpec>,
    /// Tags (providers that support them).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata (providers that support it).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The Message-ID without angle brackets; by default the run derives a stable one from
    /// the journal and the line number.
    #[serde(default)]
    pub message_id: Option<String>,
    /// A complete RFC 5322 message instead of the fields above (recipients from `to`/`cc`/
    /// `bcc`, or from its own headers when none is given).
    #[serde(default)]
    pub raw: Option<String>,
}

impl BulkLine {
    /// Parses one line: a JSON object (an array is refused, though serde would read it as
    /// the fields in order).
    pub fn parse(line: &[u8]) -> Result<BulkLine, serde_json::Error> {
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(serde::de::Error::custom("expected a JSON object `{...}`"));
        }
        serde_json::from_slice(line)
    }

    /// Builds the message. `message_id` is used unless the line sets its own (or is a raw
    /// message that has one); relative attachment paths are taken from `base_dir`.
    pub fn to_message(
        &self,
        message_id: Option<&str>,
        base_dir: &Path,
    ) -> Result<Message, MessageError> {
        let mut builder = Message::builder();
        if let Some(from) = &self.from {
            builder = builder.from(from);
        }
        for to in list(&self.to) {
            builder = builder.to(to);
        }
        for cc in list(&self.cc) {
            builder = builder.cc(cc);
        }
        for bcc in list(&self.bcc) {
            builder = builder.bcc(bcc);
        }
        let own_id = match &self.raw {
            Some(raw) => self
                .message_id
                .clone()
                .or_else(|| (!raw_has_message_id(raw)).then(|| message_id.map(str::to_string))?),
            None => self
                .message_id
                .clone()
                .or_else(|| message_id.map(str::to_string)),
        };
        if let Some(id) = own_id {
            builder = builder.message_id(id);
        }
        if let Some(raw) = &self.raw {
            let no_recipients = self.to.is_none() && self.cc.is_none() && self.bcc.is_none();
            return builder
                .raw(raw.as_bytes().to_vec())
                .recipients_from_headers(no_recipients)
                .build();
        }
        for reply_to in list(&self.reply_to) {
            builder = builder.reply_to(reply_to);
        }
        if let Some(subject) = &self.subject {
            builder = builder.subject(subject);
        }
        if let Some(html) = &self.html {
            builder = builder.html(html);
        }
        if let Some(text) = &self.text {
            builder = builder.text(text);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        for tag in &self.tags {
            builder = builder.tag(tag);
        }
        for (k, v) in &self.metadata {
            builder = builder.metadata(k, v);
        }
        for spec in &self.attachments {
            let (path, inline) = match spec {
                AttachmentSpec::Path(p) => (p, None),
                AttachmentSpec::Detailed { path, inline } => (path, inline.as_ref()),
            };
            let mut attachment = Attachment::from_path(base_dir.join(path))?;
            if let Some(cid) = inline {
                attachment = attachment.inline(cid);
            }
            builder = builder.attach(attachment);
        }
        builder.build()
    }

    /// The domain of the line's own `from`, when it has one (for a Message-ID).
    pub fn from_domain(&self) -> Option<&str> {
        let from = self.from.as_deref()?.trim().trim_end_matches('>').trim();
        let (_, domain) = from.rsplit_once('@')?;
        is_id_domain(domain).then_some(domain)
    }
}

fn list(v: &Option<OneOrMany>) -> &[String] {
    v.as_ref().map(OneOrMany::values).unwrap_or(&[])
}

/// Whether `domain` can be the right-hand side of a Message-ID as given.
pub(crate) fn is_id_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Whether a raw message's header section has a Message-ID.
fn raw_has_message_id(raw: &str) -> bool {
    raw.lines()
        .take_while(|l| !l.trim_end_matches('\r').is_empty())
        .any(|l| {
            l.get(..11)
                .is_some_and(|h| h.eq_ignore_ascii_case("message-id:"))
        })
}

/// One physical line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLine {
    /// The line's bytes (without the line ending).
    Text(Vec<u8>),
    /// The line was longer than the limit; its bytes were skipped. Its hash covers its
    /// length only.
    TooLong(u64),
}

/// The digest of one input line ([`line_hash`]).
pub type LineHash = [u8; 16];

/// A stable digest of one line (the first 16 bytes of SHA-256 over its bytes), to notice a
/// changed input.
pub fn line_hash(line: &RawLine) -> LineHash {
    let digest = match line {
        RawLine::Text(bytes) => ring::digest::digest(&ring::digest::SHA256, bytes),
        RawLine::TooLong(len) => {
            ring::digest::digest(&ring::digest::SHA256, format!("too long:{len}").as_bytes())
        }
    };
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

/// Reads lines one at a time with a bounded buffer: memory does not grow with the file, and
/// a line longer than `max` is skipped rather than kept.
pub struct LineReader<R> {
    input: R,
    max: usize,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// A reader over `input` with lines of at most `max` bytes.
    pub fn new(input: R, max: usize) -> Self {
        LineReader {
            input,
            max,
            number: 0,
        }
    }

    /// The next line and its number (from 1), or `None` at the end of the input.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, RawLine)>> {
        let mut buf = Vec::new();
        let mut len: u64 = 0;
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == IoErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            // memchr: a word at a time; a byte loop here was half of a journal's fill.
            let (part, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            len += part.len() as u64;
            if !too_long {
                if buf.len() + part.len() > self.max {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(part);
                }
            }
            let consumed = done.unwrap_or(chunk.len());
            self.input.consume(consumed);
            if done.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if too_long {
            return Ok(Some((self.number, RawLine::TooLong(len))));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some((self.number, RawLine::Text(buf))))
    }
}

/// Whether a line holds nothing but whitespace (skipped, not malformed).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(u64, RawLine)> {
        let mut r = LineReader::new(std::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn lines_are_numbered_and_crlf_is_dropped() {
        let got = lines(b"{\"a\":1}\r\n\n{\"b\":2}", 100);
        assert_eq!(
            got,
            vec![
                (1, RawLine::Text(b"{\"a\":1}".to_vec())),
                (2, RawLine::Text(Vec::new())),
                (3, RawLine::Text(b"{\"b\":2}".to_vec())),
            ]
        );
        assert!(lines(b"", 100).is_empty());
        assert_eq!(lines(b"x\n", 100).len(), 1, "a final newline ends a line");
    }

    #[test]
    fn a_long_line_is_skipped_not_kept() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        let got = lines(&input, 10);
        assert_eq!(got[0], (1, RawLine::TooLong(50)));
        assert_eq!(got[1], (2, RawLine::Text(b"ok".to_vec())));
    }

    #[test]
    fn fields_as_string_or_list() {
        let line = BulkLine::parse(
            br#"{"to":"a@example.com","cc":["b@example.com","c@example.com"],"bcc":[],
                "from":"App <app@example.org>","reply_to":"r@example.com","subject":"S",
                "html":"<p>x</p>","headers":{"X-Campaign":"w"},"tags":["t"]}"#,
        )
        .unwrap();
        let m = line
            .to_message(Some("1.2@example.org"), Path::new("."))
            .unwrap();
        assert_eq!(m.to().len(), 1);
        assert_eq!(m.cc().len(), 2);
        assert_eq!(m.subject(), "S");
        assert_eq!(m.message_id(None).unwrap(), "<1.2@example.org>");
        assert_eq!(line.from_domain(), Some("example.org"));
        assert_eq!(m.headers(), [("X-Campaign".to_string(), "w".to_string())]);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_malformed() {
        assert!(BulkLine::parse(br#"{"to":"a@example.com","subjet":"x"}"#).is_err());
        assert!(BulkLine::parse(br#"{"to":5}"#).is_err());
        assert!(BulkLine::parse(b"not json").is_err());
        assert!(BulkLine::parse(br#"["to"]"#).is_err());
    }

    #[test]
    fn invalid_messages_fail_to_build() {
        let line = BulkLine::parse(br#"{"to":"not an address","text":"x"}"#).unwrap();
        assert!(line.to_message(None, Path::new(".")).is_err());
        let line = BulkLine::parse(
            br#"{"to":"a@example.com","text":"x","attachments":["/nonexistent/f"]}"#,
        )
        .unwrap();
        assert!(matches!(
            line.to_message(None, Path::new(".")),
            Err(MessageError::AttachmentUnreadable { .. })
        ));
    }

    #[test]
    fn attachments_are_relative_to_the_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("logo.png"), b"\x89PNG").unwrap();
        let line = BulkLine::parse(
            br#"{"to":"a@example.com","from":"b@example.com","html":"<img src=\"cid:l\">",
                "attachments":[{"path":"logo.png","inline":"l"}]}"#,
        )
        .unwrap();
        let m = line.to_message(None, dir.path()).unwrap();
        assert_eq!(m.attachments()[0].content_id(), Some("l"));
    }

    #[test]
    fn raw_messages_keep_their_own_message_id() {
        let with = "From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <own@example.com>\r\n\r\nhi\r\n";
        let line = BulkLine {
            raw: Some(with.to_string()),
            ..BulkLine::default()
        };
        let m = line
            .to_message(Some("derived@example.com"), Path::new("."))
            .unwrap();
        assert_eq!(m.message_id(None).unwrap(), "<own@example.com>");
        let without = "From: a@example.com\r\nTo: b@example.com\r\n\r\nhi\r\n";
        let line = BulkLine {
            raw: Some(without.to_string()),
            ..BulkLine::default()
        };
        let m = line
            .to_message(Some("derived@example.com"), Path::new("."))
            .unwrap();
        assert_eq!(m.message_id(None).unwrap(), "<derived@example.com>");
        assert_eq!(m.to().len(), 1, "recipients from the headers");
    }

    #[test]
    fn hashes_differ_per_content() {
        let a = line_hash(&RawLine::Text(b"a".to_vec()));
        assert_eq!(a, line_hash(&RawLine::Text(b"a".to_vec())));
        assert_ne!(a, line_hash(&RawLine::Text(b"b".to_vec())));
        assert_ne!(
            line_hash(&RawLine::TooLong(5)),
            line_hash(&RawLine::TooLong(6))
        );
    }
}
