//! The [`Transport`] trait every way of sending implements, and the [`Receipt`] a successful
//! send returns.
//!
//! One trait, object safe, so an application holds an `Arc<dyn Transport>` built from
//! configuration and never cares whether mail goes over SMTP, an HTTP API or into a folder.
//! Behaviour such as retry or failover wraps any transport rather than being built into each.

mod file;
mod memory;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::{Error, Message};

pub use file::FileTransport;
pub use memory::{MemoryTransport, SentMessage};

/// A way of sending messages.
///
/// A transport that was built is configured: construction fails with a
/// [`Config`](crate::ErrorKind::Config) error otherwise, so there is no `is_configured()`.
///
/// ```
/// use std::sync::Arc;
/// use outbound::{Message, Transport, transport::MemoryTransport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
/// transport.verify().await?;
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let receipt = transport.send(&msg).await?;
/// assert_eq!(receipt.transport, "memory");
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends one message. On success every accepted recipient is listed in the receipt; a
    /// recipient the server refused while others were accepted is listed in
    /// [`Receipt::rejected`], not hidden.
    async fn send(&self, message: &Message) -> Result<Receipt, Error>;

    /// Checks that sending could work (connects, authenticates or checks the API key) without
    /// sending anything.
    async fn verify(&self) -> Result<(), Error>;

    /// The transport kind, e.g. `smtp`, `resend`, `file`.
    fn kind(&self) -> &'static str;

    /// A one-line description for humans (never containing secrets), e.g.
    /// `smtp://smtp.example.com:587 (starttls)`.
    fn describe(&self) -> String {
        self.kind().to_string()
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn send(&self, message: &Message) -> Result<Receipt, Error> {
        (**self).send(message).await
    }
    async fn verify(&self) -> Result<(), Error> {
        (**self).verify().await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn send(&self, message: &Message) -> Result<Receipt, Error> {
        (**self).send(message).await
    }
    async fn verify(&self) -> Result<(), Error> {
        (**self).verify().await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Receipt {
    /// The transport kind that delivered it.
    pub transport: String,
    /// The message's Message-ID, with angle brackets.
    pub message_id: String,
    /// The provider's own id (Resend email id, SendGrid `X-Message-Id`, the SMTP server's
    /// queue id, or the file path for the `file` transport).
    pub provider_id: Option<String>,
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients the server refused while accepting others.
    pub rejected: Vec<RejectedRecipient>,
    /// How many attempts the send took (1 without retries).
    pub attempts: u32,
    /// Time from the first attempt to success.
    #[serde(serialize_with = "serialize_millis")]
    pub elapsed: Duration,
}

impl Receipt {
    /// A receipt for a message accepted for `accepted` by a transport of `kind`.
    pub fn new(kind: &str, message_id: impl Into<String>, accepted: Vec<String>) -> Self {
        Receipt {
            transport: kind.to_string(),
            message_id: message_id.into(),
            provider_id: None,
            accepted,
            rejected: Vec::new(),
            attempts: 1,
            elapsed: Duration::ZERO,
        }
    }

    /// Sets the provider's id.
    pub fn with_provider_id(mut self, id: impl Into<String>) -> Self {
        self.provider_id = Some(id.into());
        self
    }

    /// Sets the refused recipients.
    pub fn with_rejected(mut self, rejected: Vec<RejectedRecipient>) -> Self {
        self.rejected = rejected;
        self
    }

    /// Sets the elapsed time.
    pub fn with_elapsed(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// A recipient the server refused while accepting others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRecipient {
    /// The address as sent in RCPT TO.
    pub address: String,
    /// The reply code, e.g. 550.
    pub code: u16,
    /// The enhanced status code, e.g. `5.1.1`.
    pub enhanced: Option<String>,
    /// The server's text.
    pub text: String,
}
