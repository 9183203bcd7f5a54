//! [`PreparedMessage`]: a message with its sender resolved, and everything derived from that
//! computed once.
//!
//! Why it exists: a retry, or a failover from SMTP to an HTTP provider, must send *the same
//! message*: the same Message-ID, the same bytes, and so the same idempotency key. If every
//! transport applied its own default sender and rendered the message itself, two transports
//! with different defaults would produce two different messages. So the sender is decided once,
//! by whoever prepares, and every attempt and every transport receives this one value.

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::{Envelope, Mailbox, Message, MessageError, RenderedMessage};

/// A [`Message`] with its sender decided, its envelope and Message-ID computed, and its
/// RFC 5322 bytes rendered at most once. Cheap to clone (clones share everything).
///
/// ```
/// use outbound::Message;
/// let msg = Message::builder().to("ada@example.com").subject("Hi").text("Hello").build()?;
/// let default_from = "app@example.com".parse()?;
/// let prepared = msg.prepare(Some(&default_from))?;
/// assert_eq!(prepared.sender().email(), "app@example.com");
/// assert_eq!(prepared.envelope().to, ["ada@example.com"]);
/// assert!(prepared.message_id().ends_with("@example.com>"));
/// // The bytes are rendered once; every call returns the same ones.
/// assert_eq!(prepared.bytes()?.as_ptr(), prepared.bytes()?.as_ptr());
/// # Ok::<(), outbound::MessageError>(())
/// ```
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    message: Message,
    sender: Mailbox,
    envelope: Envelope,
    message_id: String,
    rendered: OnceLock<RenderedMessage>,
    // Only for callers that need one contiguous buffer: senders stream `rendered` instead.
    bytes: OnceLock<Vec<u8>>,
}

impl Message {
    /// Decides the sender (the message's own `from`, else `default_from`) and computes the
    /// envelope and Message-ID. The bytes are rendered on first use of
    /// [`PreparedMessage::bytes`], once.
    ///
    /// Fails with [`MessageError::NoSender`] when there is neither.
    pub fn prepare(&self, default_from: Option<&Mailbox>) -> Result<PreparedMessage, MessageError> {
        let sender = self.sender(default_from)?.clone();
        let envelope = self.envelope(Some(&sender))?;
        let message_id = self.message_id(Some(&sender))?;
        Ok(PreparedMessage {
            inner: Arc::new(Inner {
                message: self.clone(),
                sender,
                envelope,
                message_id,
                rendered: OnceLock::new(),
                bytes: OnceLock::new(),
            }),
        })
    }
}

impl PreparedMessage {
    /// The message as built.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// The sender: the message's `from`, or the default it was prepared with.
    pub fn sender(&self) -> &Mailbox {
        &self.inner.sender
    }

    /// The SMTP envelope (MAIL FROM and every RCPT TO, Bcc included).
    pub fn envelope(&self) -> &Envelope {
        &self.inner.envelope
    }

    /// The Message-ID, with angle brackets.
    pub fn message_id(&self) -> &str {
        &self.inner.message_id
    }

    /// The RFC 5322 bytes (CRLF line endings, no line over 998 octets), rendered on the first
    /// call. Rendering is deterministic (MIME boundaries derive from the Message-ID), and the
    /// first result is kept, so every attempt sends byte-identical data.
    ///
    /// This is one contiguous copy of the whole message, attachments encoded; a sender should
    /// stream [`rendered`](Self::rendered) instead, which never holds that copy.
    pub fn bytes(&self) -> Result<&[u8], MessageError> {
        if let Some(bytes) = self.inner.bytes.get() {
            return Ok(bytes);
        }
        let bytes = self.rendered()?.to_vec();
        Ok(self.inner.bytes.get_or_init(|| bytes))
    }

    /// The rendered message as segments, on the first call: headers and text as bytes,
    /// attachments as their own shared bytes, base64-encoded only as
    /// [`RenderedMessage::chunks`] reads them. The same bytes as [`bytes`](Self::bytes).
    pub fn rendered(&self) -> Result<&RenderedMessage, MessageError> {
        if let Some(rendered) = self.inner.rendered.get() {
            return Ok(rendered);
        }
        let rendered = self
            .inner
            .message
            .render_segments(Some(&self.inner.sender))?;
        // Two callers may race to render; both produced the same bytes and the first is kept.
        Ok(self.inner.rendered.get_or_init(|| rendered))
    }
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("message_id", &self.inner.message_id)
            .field("envelope", &self.inner.envelope)
            .field("rendered", &self.inner.rendered.get().map(|r| r.len()))
            .finish()
    }
}
