//! MIME rendering on top of `mail-builder`, which does the encoding work (RFC 2047 headers,
//! quoted-printable/base64 bodies with short lines, RFC 2231 file names). This module only
//! decides the structure:
//!
//! ```text
//! multipart/mixed                  only when there are attachments
//! ├── multipart/alternative        text and HTML (text derived when only HTML is given)
//! │   ├── text/plain
//! │   └── multipart/related        only when there are inline parts
//! │       ├── text/html
//! │       └── image/png (Content-ID)
//! └── application/pdf (attachment)
//! ```
//!
//! Bodies are normalised to CRLF first: mail-builder passes a 7-bit body through as is, and a
//! bare CR or LF must never reach the wire.
//!
//! Boundaries are derived from the Message-ID rather than random, so rendering the same
//! message twice gives the same bytes: a retry sends exactly what the first attempt sent.

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder as MimeBuilder;

use super::rendered::RenderedMessage;

use super::text::{html_to_text, normalize_newlines};
use super::{Mailbox, Message, MessageError};

fn address(m: &Mailbox) -> Address<'static> {
    Address::new_address(m.name().map(str::to_string), m.ascii_email())
}

fn address_list(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(list.iter().map(address).collect())
}

pub(crate) fn render<'m>(
    msg: &'m Message,
    default_from: Option<&Mailbox>,
) -> Result<RenderedMessage, MessageError> {
    let from = msg.sender(default_from)?;
    let message_id = msg.message_id(default_from)?;
    let secs = msg
        .date
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();

    let mut builder = MimeBuilder::new()
        .from(address(from))
        .date(Date::new(secs))
        .message_id(MessageId::new(
            message_id
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        ));
    if !msg.to.is_empty() {
        builder = builder.to(address_list(&msg.to));
    }
    if !msg.cc.is_empty() {
        builder = builder.cc(address_list(&msg.cc));
    }
    if !msg.reply_to.is_empty() {
        builder = builder.reply_to(address_list(&msg.reply_to));
    }
    // Bcc is deliberately never written: it lives in the envelope only.
    builder = builder.subject(Text::new(msg.subject.clone()));
    for (name, value) in &msg.headers {
        builder = builder.header(name.clone(), Text::new(value.clone()));
    }

    // Borrowed when already clean (the usual case): no copy of the body before mail-builder's.
    let text: Option<Cow<'m, str>> = match (&msg.text, &msg.html) {
        (Some(t), _) => Some(normalize_newlines(t)),
        (None, Some(h)) => Some(Cow::Owned(
            normalize_newlines(&html_to_text(h)).into_owned(),
        )),
        (None, None) => None,
    };
    let html = msg.html.as_deref().map(normalize_newlines);

    // Parts mail-builder would base64-encode get a marker instead, replaced afterwards by the
    // attachment's own bytes, encoded as they are sent (see `rendered.rs` for why). The
    // marker holds a random nonce and NULs, which nothing else in a rendered message can.
    // The nonce costs a system call and is needed only for such parts: made on first use.
    let mut nonce: Option<String> = None;
    let mut markers: Vec<Vec<u8>> = Vec::new();
    let mut contents: Vec<std::sync::Arc<[u8]>> = Vec::new();
    let mut part = |a: &'m super::Attachment| -> (MimePart<'m>, bool) {
        let content_type = part_type(a);
        if content_type.is_text() {
            return (MimePart::new(content_type, a.content()), false);
        }
        let nonce = nonce.get_or_insert_with(marker_nonce);
        let marker = format!("\0outbound-part-{nonce}-{}\0", markers.len()).into_bytes();
        let part = MimePart::new(content_type, marker.clone());
        markers.push(marker);
        contents.push(a.shared_content());
        (part, true)
    };
    let mut inline: Vec<MimePart<'m>> = Vec::new();
    let mut attached: Vec<MimePart<'m>> = Vec::new();
    for a in &msg.attachments {
        let (p, marked) = part(a);
        let p = match a.content_id() {
            Some(cid) => p.inline().cid(cid.to_string()),
            None => p.attachment(a.filename().to_string()),
        };
        // Last, as mail-builder writes it last for the parts it encodes itself.
        let p = if marked {
            p.transfer_encoding("base64")
        } else {
            p
        };
        if a.content_id().is_some() {
            inline.push(p);
        } else {
            attached.push(p);
        }
    }

    // "=_" cannot occur in quoted-printable or base64 output (RFC 2045 section 6.7), and the
    // Message-ID's unique part keeps it out of any 7-bit text in practice.
    let unique = || -> String {
        message_id
            .trim_matches(['<', '>'])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(48)
            .collect()
    };
    let multipart = |subtype: &str, parts: Vec<MimePart<'m>>| {
        let boundary = format!("=_{}_{subtype}", unique());
        MimePart::new(
            ContentType::new(format!("multipart/{subtype}")).attribute("boundary", boundary),
            parts,
        )
    };
    let with_related = |part: MimePart<'m>| {
        if inline.is_empty() {
            part
        } else {
            let mut parts = vec![part];
            parts.extend(inline.iter().cloned());
            multipart("related", parts)
        }
    };
    let text_part = text.map(|t| MimePart::new("text/plain", t));
    let html_part = html.map(|h| MimePart::new("text/html", h));
    let main = match (text_part, html_part) {
        (Some(t), Some(h)) => multipart("alternative", vec![t, with_related(h)]),
        (Some(t), None) => with_related(t),
        (None, Some(h)) => with_related(h),
        (None, None) => return Err(MessageError::NoBody),
    };
    let root = if attached.is_empty() {
        main
    } else {
        let mut parts = vec![main];
        parts.extend(attached);
        multipart("mixed", parts)
    };

    let written = builder
        .body(root)
        .write_to_vec()
        .map_err(|e| MessageError::InvalidRaw {
            reason: format!("rendering failed: {e}"),
        })?;
    RenderedMessage::with_base64_parts(written, &markers, contents).ok_or_else(|| {
        MessageError::InvalidRaw {
            reason: "rendering failed: an attachment's place in the message was lost".into(),
        }
    })
}

/// 128 random bits in hex (or, should the system's random source fail, the time: the marker
/// then still cannot occur in the message, which holds no NUL where markers go).
fn marker_nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The Content-Type of an attachment's part. A `text/*` type without parameters says its
/// charset: `utf-8` when the content is valid UTF-8 (so a UTF-8 `.txt` is not shown as
/// mojibake); otherwise the charset is unknown, and the part goes as
/// `application/octet-stream` rather than as text in a guessed charset.
fn part_type(a: &super::Attachment) -> ContentType<'static> {
    let ct = a.content_type();
    if ct.len() > 5 && ct[..5].eq_ignore_ascii_case("text/") && !ct.contains(';') {
        if std::str::from_utf8(a.content()).is_ok() {
            return ContentType::new(ct.to_string()).attribute("charset", "utf-8");
        }
        return ContentType::new("application/octet-stream");
    }
    ContentType::new(ct.to_string())
}
