//! [`RenderedMessage`]: a message's RFC 5322 bytes as a sequence of segments, so that a large
//! attachment is never held twice.
//!
//! Why: a 100 MB attachment is 137 MB once base64-encoded. Rendering it into one contiguous
//! buffer holds the raw bytes (in the [`Message`](super::Message)) and the encoded copy at the
//! same time, and sending then needs nothing but the encoded copy. Here the encoded form of a
//! base64 part is produced a chunk at a time, while it is written: the rendered message costs
//! its headers and text parts, not a second copy of every attachment.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use base64::Engine as _;

/// Input bytes per base64 line: 57 bytes encode to 76 characters (RFC 2045 §6.8's limit).
const LINE_INPUT: usize = 57;
/// Input bytes per chunk [`RenderedMessage::chunks`] yields for a base64 part (about 78 KiB out).
const CHUNK_LINES: usize = 1024;

/// The rendered bytes of a message: what mail-builder wrote, with each attachment's content
/// kept as the attachment's own (shared) bytes and base64-encoded as it is read.
///
/// ```
/// use outbound::{Attachment, Message};
/// let msg = Message::builder()
///     .from("app@example.com").to("ada@example.com").subject("Report").text("Attached.")
///     .attach(Attachment::from_bytes("data.bin", vec![7u8; 100_000]))
///     .build()?;
/// let prepared = msg.prepare(None)?;
/// let rendered = prepared.rendered()?;
/// // The chunks, in order, are exactly the message's bytes.
/// let joined: Vec<u8> = rendered.chunks().flat_map(|c| c.into_owned()).collect();
/// assert_eq!(joined.len(), rendered.len());
/// assert_eq!(joined, prepared.bytes()?);
/// # Ok::<(), outbound::MessageError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    segments: Vec<Segment>,
    len: usize,
}

#[derive(Clone, PartialEq, Eq)]
enum Segment {
    /// Bytes as written.
    Bytes(Vec<u8>),
    /// Content sent as base64 lines of 76 characters, each ending in CRLF.
    Base64(Arc<[u8]>),
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::Base64(raw) => base64_len(raw.len()),
        }
    }
}

/// The length of `n` bytes as base64 lines of 76 characters, each ending in CRLF.
fn base64_len(n: usize) -> usize {
    let full = n / LINE_INPUT;
    let rest = n % LINE_INPUT;
    full * 78
        + if rest == 0 {
            0
        } else {
            rest.div_ceil(3) * 4 + 2
        }
}

/// Appends `raw` to `out` as base64 lines of 76 characters, each ending in CRLF.
fn encode_lines(raw: &[u8], out: &mut Vec<u8>) {
    let engine = base64::engine::general_purpose::STANDARD;
    for line in raw.chunks(LINE_INPUT) {
        let start = out.len();
        out.resize(start + line.len().div_ceil(3) * 4, 0);
        // The buffer was sized for exactly this line, so encoding cannot run out of room.
        let written = engine
            .encode_slice(line, &mut out[start..])
            .unwrap_or_default();
        out.truncate(start + written);
        out.extend_from_slice(b"\r\n");
    }
}

impl RenderedMessage {
    /// A message that is one run of bytes (a raw message, say; no segment when empty).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        let segments = if bytes.is_empty() {
            Vec::new()
        } else {
            vec![Segment::Bytes(bytes)]
        };
        RenderedMessage { segments, len }
    }

    /// Builds from `written` (mail-builder's output), in which each `markers[i]` stands for
    /// the base64 lines of `contents[i]`. The markers may appear in any order: parts are
    /// written in the MIME tree's order (inline parts inside `multipart/related`, before the
    /// attachments in `multipart/mixed`), not in the order they were attached. A marker not
    /// found, or markers that overlap, are an error (the rendering would be wrong), reported
    /// as `None`.
    pub(crate) fn with_base64_parts(
        written: Vec<u8>,
        markers: &[Vec<u8>],
        contents: Vec<Arc<[u8]>>,
    ) -> Option<Self> {
        if markers.is_empty() {
            // Nothing to splice in: the rendered bytes are the message, moved, not copied.
            return Some(Self::from_bytes(written));
        }
        if contents.len() != markers.len() {
            return None;
        }
        // Where each marker was written, in the order written.
        let mut places = markers
            .iter()
            .enumerate()
            .map(|(i, marker)| Some((find(&written, marker)?, i)))
            .collect::<Option<Vec<(usize, usize)>>>()?;
        places.sort_unstable();
        let mut contents: Vec<Option<Arc<[u8]>>> = contents.into_iter().map(Some).collect();
        let mut segments = Vec::with_capacity(markers.len() * 2 + 1);
        let mut from = 0;
        for (at, i) in places {
            let bytes = written.get(from..at)?;
            segments.push(Segment::Bytes(bytes.to_vec()));
            segments.push(Segment::Base64(contents.get_mut(i)?.take()?));
            from = at + markers.get(i)?.len();
        }
        segments.push(Segment::Bytes(written.get(from..)?.to_vec()));
        segments.retain(|s| !matches!(s, Segment::Bytes(b) if b.is_empty()));
        let len = segments.iter().map(Segment::len).sum();
        Some(RenderedMessage { segments, len })
    }

    /// The message's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, in order, in chunks of at most about 78 KiB for attachments (text and headers
    /// come as they are): encoded as they are asked for, so a caller that writes each chunk
    /// before asking for the next never holds the encoded attachment whole.
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks {
            segments: &self.segments,
            offset: 0,
        }
    }

    /// Whether every byte is ASCII (no 8BITMIME needed): base64 parts always are.
    pub fn is_ascii(&self) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Bytes(b) => b.is_ascii(),
            Segment::Base64(_) => true,
        })
    }

    /// Writes every byte to `w`, a chunk at a time.
    pub fn write_to(&self, w: &mut impl io::Write) -> io::Result<()> {
        for chunk in self.chunks() {
            w.write_all(&chunk)?;
        }
        Ok(())
    }

    /// The bytes as one buffer (for a caller that needs them contiguous).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for chunk in self.chunks() {
            out.extend_from_slice(&chunk);
        }
        out
    }
}

impl std::fmt::Debug for RenderedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedMessage")
            .field("len", &self.len)
            .field("segments", &self.segments.len())
            .finish()
    }
}

/// The iterator [`RenderedMessage::chunks`] returns.
#[derive(Debug)]
pub struct Chunks<'a> {
    segments: &'a [Segment],
    /// How far into the first segment's raw bytes (base64 parts only).
    offset: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.segments.split_first()?;
        match first {
            Segment::Bytes(b) => {
                self.segments = rest;
                Some(Cow::Borrowed(&b[..]))
            }
            Segment::Base64(raw) => {
                let end = (self.offset + LINE_INPUT * CHUNK_LINES).min(raw.len());
                let part = &raw[self.offset..end];
                let mut out = Vec::with_capacity(base64_len(part.len()));
                encode_lines(part, &mut out);
                if end == raw.len() {
                    self.segments = rest;
                    self.offset = 0;
                } else {
                    self.offset = end;
                }
                Some(Cow::Owned(out))
            }
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segment::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Segment::Base64(raw) => write!(f, "Base64({})", raw.len()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_match_their_computed_length() {
        for n in [0, 1, 2, 3, 56, 57, 58, 114, 1000, 57 * 1024 + 5] {
            let raw: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            let mut out = Vec::new();
            encode_lines(&raw, &mut out);
            assert_eq!(out.len(), base64_len(n), "n = {n}");
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(line.len() <= 77 && line.ends_with(b"\r"), "n = {n}");
            }
        }
    }

    /// Parts are written in the MIME tree's order (inline parts inside `multipart/related`,
    /// before the attachments), not in the order they were attached: each marker is found
    /// wherever it was written.
    #[test]
    fn markers_are_placed_where_they_were_written_in_any_order() {
        let made = RenderedMessage::with_base64_parts(
            b"head\0m1\0middle\0m0\0tail".to_vec(),
            &[b"\0m0\0".to_vec(), b"\0m1\0".to_vec()],
            vec![Arc::from(&b"first"[..]), Arc::from(&b"second"[..])],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(made.to_vec()).unwrap(),
            "headc2Vjb25k\r\nmiddleZmlyc3Q=\r\ntail"
        );
        assert_eq!(made.len(), made.to_vec().len());
    }

    #[test]
    fn a_missing_marker_is_refused() {
        let made = RenderedMessage::with_base64_parts(
            b"no marker here".to_vec(),
            &[b"\0marker\0".to_vec()],
            vec![Arc::from(&b"x"[..])],
        );
        assert!(made.is_none());
    }
}
