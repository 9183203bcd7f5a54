//! The message model: what to send, validated once in [`MessageBuilder::build`], rendered to
//! RFC 5322 bytes by [`Message::render`].
//!
//! Validation is front-loaded on purpose: a message that was built can be handed to any
//! transport, and the only errors left are the transport's own (a server's answer, the
//! network). The one thing that may still be missing is the sender, because a transport's
//! configured default sender can supply it.

mod address;
mod attachment;
mod error;
mod mime;
mod prepared;
mod raw;
mod rendered;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use address::Mailbox;
pub use attachment::Attachment;
pub use error::MessageError;
pub use prepared::PreparedMessage;
pub use rendered::{Chunks, RenderedMessage};

/// Headers Outbound writes itself; giving them as extra headers is refused, with the builder
/// method to use instead.
const RESERVED_HEADERS: &[(&str, &str)] = &[
    ("from", "from()"),
    ("to", "to()"),
    ("cc", "cc()"),
    ("bcc", "bcc()"),
    ("reply-to", "reply_to()"),
    ("subject", "subject()"),
    ("date", "builder (Date is set when the message is built)"),
    ("message-id", "message_id()"),
    ("mime-version", "builder (MIME is generated)"),
    ("content-type", "html()/text()/attach()"),
    ("content-transfer-encoding", "html()/text()/attach()"),
];

/// An email, validated and ready for any transport.
///
/// ```
/// use outbound::Message;
/// let msg = Message::builder()
///     .from("Billing <billing@example.com>")
///     .to("ada@example.com")
///     .cc("Grace <grace@example.com>")
///     .subject("Your invoice")
///     .html("<p>Thanks for your order.</p>")
///     .build()?;
/// assert_eq!(msg.recipients().count(), 2);
/// # Ok::<(), outbound::MessageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    from: Option<Mailbox>,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    reply_to: Vec<Mailbox>,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    attachments: Vec<Attachment>,
    headers: Vec<(String, String)>,
    tags: Vec<String>,
    metadata: BTreeMap<String, String>,
    message_id: MessageIdSeed,
    date: SystemTime,
    raw: Option<Arc<[u8]>>,
}

/// Either an explicit Message-ID, or the unique left part of one whose domain is the sender's
/// (known only once the default sender is applied).
#[derive(Debug, Clone)]
enum MessageIdSeed {
    Explicit(String),
    Generated(String),
}

/// Who the message goes to and comes from at the SMTP level (MAIL FROM / RCPT TO): every
/// `to`, `cc` and `bcc` address, deduplicated, domains in punycode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (MAIL FROM).
    pub from: String,
    /// The forward paths (RCPT TO), in order, without duplicates.
    pub to: Vec<String>,
    /// Whether an address has a non-ASCII local part, so the server must offer SMTPUTF8.
    pub smtputf8: bool,
}

impl Message {
    /// Starts a message.
    pub fn builder() -> MessageBuilder {
        MessageBuilder::default()
    }

    /// The sender as set on the message (the transport's default applies when this is `None`).
    pub fn from(&self) -> Option<&Mailbox> {
        self.from.as_ref()
    }
    /// The `To` recipients.
    pub fn to(&self) -> &[Mailbox] {
        &self.to
    }
    /// The `Cc` recipients.
    pub fn cc(&self) -> &[Mailbox] {
        &self.cc
    }
    /// The `Bcc` recipients (never written into the message's headers).
    pub fn bcc(&self) -> &[Mailbox] {
        &self.bcc
    }
    /// The `Reply-To` addresses.
    pub fn reply_to(&self) -> &[Mailbox] {
        &self.reply_to
    }
    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The HTML body.
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }
    /// The plain-text body as given (see [`Message::text_or_derived`]).
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
    /// The plain-text body, or one derived from the HTML when only HTML was given.
    pub fn text_or_derived(&self) -> Option<String> {
        match (&self.text, &self.html) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(h)) => Some(text::html_to_text(h)),
            (None, None) => None,
        }
    }
    /// Attachments and inline parts.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }
    /// Extra headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    /// Tags (SendGrid categories, Resend tags).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// Metadata (SendGrid custom_args, Resend tags with values).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// When the message was built; written as its `Date`.
    pub fn date(&self) -> SystemTime {
        self.date
    }
    /// The complete RFC 5322 message when built with [`MessageBuilder::raw`].
    pub fn raw(&self) -> Option<&[u8]> {
        self.raw.as_deref()
    }

    /// Every envelope recipient: `to`, then `cc`, then `bcc`.
    pub fn recipients(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
    }

    /// The sender: the message's own `from`, else `default_from`.
    pub fn sender<'a>(
        &'a self,
        default_from: Option<&'a Mailbox>,
    ) -> Result<&'a Mailbox, MessageError> {
        self.from
            .as_ref()
            .or(default_from)
            .ok_or(MessageError::NoSender)
    }

    /// The Message-ID, with angle brackets, e.g. `<...@example.com>`. It is stable: every
    /// call and every retry gives the same value.
    pub fn message_id(&self, default_from: Option<&Mailbox>) -> Result<String, MessageError> {
        match &self.message_id {
            MessageIdSeed::Explicit(id) => Ok(format!("<{id}>")),
            MessageIdSeed::Generated(left) => {
                let sender = self.sender(default_from)?;
                let domain = sender
                    .ascii_email()
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_string())
                    .unwrap_or_else(|| "outbound.invalid".to_string());
                Ok(format!("<{left}@{domain}>"))
            }
        }
    }

    /// The SMTP envelope.
    ///
    /// ```
    /// use outbound::Message;
    /// let msg = Message::builder().from("a@example.com").to("b@example.com")
    ///     .bcc("c@example.com").text("hi").build()?;
    /// let env = msg.envelope(None)?;
    /// assert_eq!(env.to, ["b@example.com", "c@example.com"]);
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn envelope(&self, default_from: Option<&Mailbox>) -> Result<Envelope, MessageError> {
        let from = self.sender(default_from)?;
        let mut to: Vec<String> = Vec::new();
        let mut smtputf8 = from.needs_smtputf8();
        for rcpt in self.recipients() {
            smtputf8 |= rcpt.needs_smtputf8();
            let addr = rcpt.ascii_email();
            if !to.iter().any(|t| t.eq_ignore_ascii_case(&addr)) {
                to.push(addr);
            }
        }
        Ok(Envelope {
            from: from.ascii_email(),
            to,
            smtputf8,
        })
    }

    /// Renders the message as RFC 5322 bytes with CRLF line endings, no line over 998 octets,
    /// ready for SMTP DATA or a `.eml` file.
    ///
    /// ```
    /// use outbound::Message;
    /// let msg = Message::builder().from("a@example.com").to("b@example.com")
    ///     .subject("Grüße").text("hello").build()?;
    /// let bytes = msg.render(None)?;
    /// let text = String::from_utf8(bytes).unwrap();
    /// assert!(text.contains("Subject: =?utf-8?"));
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn render(&self, default_from: Option<&Mailbox>) -> Result<Vec<u8>, MessageError> {
        Ok(self.render_segments(default_from)?.to_vec())
    }

    /// Renders as [`RenderedMessage`] segments: attachments are not copied, but encoded as the
    /// segments are read.
    pub(crate) fn render_segments(
        &self,
        default_from: Option<&Mailbox>,
    ) -> Result<RenderedMessage, MessageError> {
        match &self.raw {
            Some(raw) => raw::finish(raw, &self.message_id(default_from)?, self.date)
                .map(RenderedMessage::from_bytes),
            None => mime::render(self, default_from),
        }
    }
}

/// Builds a [`Message`]; nothing is checked until [`MessageBuilder::build`], which reports the
/// first problem found.
#[derive(Debug, Default)]
pub struct MessageBuilder {
    from: Option<String>,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
    reply_to: Vec<String>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    attachments: Vec<Attachment>,
    attachment_paths: Vec<std::path::PathBuf>,
    headers: Vec<(String, String)>,
    tags: Vec<String>,
    metadata: BTreeMap<String, String>,
    message_id: Option<String>,
    raw: Option<Vec<u8>>,
    recipients_from_headers: bool,
}

impl MessageBuilder {
    /// The sender, `addr@example.com` or `Name <addr@example.com>`.
    pub fn from(mut self, mailbox: impl Into<String>) -> Self {
        self.from = Some(mailbox.into());
        self
    }
    /// Adds `To` recipients: one mailbox or an RFC 5322 list
    /// (`Ada <ada@example.com>, bob@example.com`); call again for more.
    pub fn to(mut self, mailbox: impl Into<String>) -> Self {
        self.to.push(mailbox.into());
        self
    }
    /// Adds `Cc` recipients: one mailbox or an RFC 5322 list.
    pub fn cc(mut self, mailbox: impl Into<String>) -> Self {
        self.cc.push(mailbox.into());
        self
    }
    /// Adds `Bcc` recipients: one mailbox or an RFC 5322 list.
    pub fn bcc(mut self, mailbox: impl Into<String>) -> Self {
        self.bcc.push(mailbox.into());
        self
    }
    /// Adds `Reply-To` addresses: one mailbox or an RFC 5322 list.
    pub fn reply_to(mut self, mailbox: impl Into<String>) -> Self {
        self.reply_to.push(mailbox.into());
        self
    }
    /// The subject (any Unicode; encoded per RFC 2047 when needed).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    /// The HTML body.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }
    /// The plain-text body.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
    /// Adds an attachment or inline part.
    pub fn attach(mut self, attachment: Attachment) -> Self {
        self.attachments.push(attachment);
        self
    }
    /// Adds a file to be read when the message is built.
    pub fn attach_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.attachment_paths.push(path.into());
        self
    }
    /// Adds an extra header, e.g. `("X-Campaign", "welcome")`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
    /// Sets the Message-ID (without angle brackets) instead of a generated one.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
    /// Sends a complete RFC 5322 message as it is (like `sendmail`). Line endings are
    /// normalised to CRLF; a Message-ID and Date are added when missing; `Bcc` is removed.
    /// Recipients come from `to`/`cc`/`bcc`, or from the message's headers with
    /// [`MessageBuilder::recipients_from_headers`].
    pub fn raw(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.raw = Some(bytes.into());
        self
    }
    /// With [`MessageBuilder::raw`]: take recipients from the `To`, `Cc` and `Bcc` headers
    /// (sendmail's `-t`), and the sender from `From` when none is set.
    pub fn recipients_from_headers(mut self, yes: bool) -> Self {
        self.recipients_from_headers = yes;
        self
    }

    /// Validates everything and returns the message, or the first problem.
    pub fn build(self) -> Result<Message, MessageError> {
        let parse_list = |values: &[String], field: &str| -> Result<Vec<Mailbox>, MessageError> {
            let mut out = Vec::new();
            for v in values {
                // One value may hold an RFC 5322 address list: every mailbox is a recipient.
                out.extend(Mailbox::parse_list(v, field)?);
            }
            Ok(out)
        };
        let mut from = self
            .from
            .as_deref()
            .map(|f| Mailbox::parse_for(f, "from"))
            .transpose()?;
        let mut to = parse_list(&self.to, "to")?;
        let mut cc = parse_list(&self.cc, "cc")?;
        let mut bcc = parse_list(&self.bcc, "bcc")?;
        let reply_to = parse_list(&self.reply_to, "reply_to")?;

        let subject = self.subject.unwrap_or_default();
        check_line(&subject, "subject")?;
        for (name, value) in &self.headers {
            validate_header(name, value)?;
        }
        for tag in &self.tags {
            check_line(tag, "tags")?;
        }
        for (k, v) in &self.metadata {
            check_line(k, "metadata")?;
            check_line(v, "metadata")?;
        }
        if let Some(id) = &self.message_id {
            validate_message_id(id)?;
        }

        let mut attachments = self.attachments;
        for path in &self.attachment_paths {
            attachments.push(Attachment::from_path(path)?);
        }
        for a in &attachments {
            a.validate()?;
        }

        let mut raw = None;
        let mut message_id = self.message_id;
        if let Some(bytes) = self.raw {
            if self.html.is_some() || self.text.is_some() || !attachments.is_empty() {
                return Err(MessageError::InvalidRaw {
                    reason: "a raw message cannot be combined with html, text or attachments"
                        .into(),
                });
            }
            let parsed = raw::prepare(&bytes)?;
            if self.recipients_from_headers {
                to.extend(parsed.to);
                cc.extend(parsed.cc);
                bcc.extend(parsed.bcc);
            }
            if from.is_none() {
                from = parsed.from;
            }
            if message_id.is_none() {
                message_id = parsed.message_id;
            }
            raw = Some(Arc::from(parsed.bytes));
        } else if self.html.is_none() && self.text.is_none() {
            return Err(MessageError::NoBody);
        }

        if to.is_empty() && cc.is_empty() && bcc.is_empty() {
            return Err(MessageError::NoRecipient);
        }

        let message_id = match message_id {
            Some(id) => MessageIdSeed::Explicit(id),
            None => MessageIdSeed::Generated(unique_id()),
        };
        Ok(Message {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            html: self.html,
            text: self.text,
            attachments,
            headers: self.headers,
            tags: self.tags,
            metadata: self.metadata,
            message_id,
            date: SystemTime::now(),
            raw,
        })
    }
}

fn validate_header(name: &str, value: &str) -> Result<(), MessageError> {
    // RFC 5322 field-name: printable US-ASCII except colon.
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(MessageError::InvalidHeaderName {
            name: name.to_string(),
        });
    }
    if let Some((_, hint)) = RESERVED_HEADERS
        .iter()
        .find(|(reserved, _)| reserved.eq_ignore_ascii_case(name))
    {
        return Err(MessageError::ReservedHeader {
            name: name.to_string(),
            hint,
        });
    }
    check_line(value, name)
}

/// A header value must be one line of text: CR or LF would let it add headers of its own
/// (header injection); NUL and other control characters (tab aside) are forbidden by RFC 5322
/// and handled differently by each server.
pub(crate) fn check_line(value: &str, field: &str) -> Result<(), MessageError> {
    if value.contains(['\r', '\n']) {
        return Err(MessageError::HeaderInjection {
            field: field.to_string(),
        });
    }
    if value
        .chars()
        .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
    {
        return Err(MessageError::ControlCharacter {
            field: field.to_string(),
        });
    }
    Ok(())
}

fn validate_message_id(id: &str) -> Result<(), MessageError> {
    check_line(id, "message_id")?;
    let ok = id
        .split_once('@')
        .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if ok {
        Ok(())
    } else {
        Err(MessageError::InvalidAddress {
            field: "message_id".into(),
            value: id.to_string(),
            reason: "a Message-ID is `unique@domain` in printable ASCII, without angle brackets"
                .into(),
        })
    }
}

/// 128 random bits plus the time, hex encoded: unique without coordination.
fn unique_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS RNG is unavailable only in exotic sandboxes; fall back to time and address
        // entropy rather than fail a send.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{millis:x}.{hex}")
}
