//! Why a message was refused before anything was sent.

use std::path::PathBuf;

/// A message that cannot be sent as built. Every variant names the offending field and what
/// would be valid; converting into [`crate::Error`] gives kind
/// [`ErrorKind::InvalidMessage`](crate::ErrorKind::InvalidMessage).
///
/// ```
/// use outbound::{Message, MessageError};
/// let err = Message::builder().subject("hi").text("body").build().unwrap_err();
/// assert!(matches!(err, MessageError::NoRecipient));
/// assert_eq!(err.field(), Some("to"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// No `to`, `cc` or `bcc` address.
    #[error("the message has no recipient: add at least one address to `to`, `cc` or `bcc`")]
    NoRecipient,
    /// No `from`, and no default sender configured.
    #[error(
        "the message has no sender: set `from` on the message or give the transport a default \
         sender (`default_from`)"
    )]
    NoSender,
    /// Neither `html` nor `text`.
    #[error("the message has no body: set `html` or `text`")]
    NoBody,
    /// An address that is not a valid mailbox.
    #[error(
        "invalid address in `{field}`: {value:?} ({reason}); expected `name@example.com` or \
         `Display Name <name@example.com>`"
    )]
    InvalidAddress {
        /// The field: `from`, `to`, `cc`, `bcc`, `reply_to`.
        field: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CR or LF inside a header value or an address: refused, it would let the value add
    /// headers of its own (header injection).
    #[error(
        "`{field}` contains a line break (CR or LF); header values and addresses must be a \
         single line"
    )]
    HeaderInjection {
        /// The field or header name.
        field: String,
    },
    /// A NUL or another control character (other than tab) in a header value or address:
    /// RFC 5322 forbids them, and servers disagree about them (Postfix cuts a header at NUL).
    #[error(
        "`{field}` contains a control character (NUL or another below 0x20 except tab); header \
         values and addresses must be printable text"
    )]
    ControlCharacter {
        /// The field or header name.
        field: String,
    },
    /// A header name that is not an RFC 5322 field name.
    #[error(
        "header name {name:?} is not valid: use printable ASCII without spaces or `:` \
         (RFC 5322 field name), e.g. `X-Campaign`"
    )]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },
    /// A header that Outbound writes itself and cannot be given as an extra header.
    #[error("header `{name}` is set by Outbound; use the builder's {hint} instead")]
    ReservedHeader {
        /// The name as given.
        name: String,
        /// The builder method to use instead.
        hint: &'static str,
    },
    /// An attachment file that could not be read.
    #[error("attachment {path:?} could not be read: {source}")]
    AttachmentUnreadable {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An attachment with an unusable file name, content type or Content-ID.
    #[error("attachment {filename:?}: {reason}")]
    InvalidAttachment {
        /// The attachment's file name.
        filename: String,
        /// What is wrong.
        reason: String,
    },
    /// A raw RFC 5322 message that cannot be sent as it is.
    #[error("raw message: {reason}")]
    InvalidRaw {
        /// What is wrong.
        reason: String,
    },
}

impl MessageError {
    /// The field the error is about (`to`, `from`, `subject`, a header name...), when there is
    /// one.
    pub fn field(&self) -> Option<&str> {
        match self {
            MessageError::NoRecipient => Some("to"),
            MessageError::NoSender => Some("from"),
            MessageError::NoBody => Some("body"),
            MessageError::InvalidAddress { field, .. }
            | MessageError::HeaderInjection { field }
            | MessageError::ControlCharacter { field } => Some(field),
            MessageError::InvalidHeaderName { name }
            | MessageError::ReservedHeader { name, .. } => Some(name),
            MessageError::AttachmentUnreadable { .. } | MessageError::InvalidAttachment { .. } => {
                Some("attachments")
            }
            MessageError::InvalidRaw { .. } => Some("raw"),
        }
    }
}
