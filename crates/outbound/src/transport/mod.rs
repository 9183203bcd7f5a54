//! The [`Transport`] trait every way of sending implements, the [`Receipt`] a successful send
//! returns, and the [`layer`]s that wrap any transport.
//!
//! One trait, object safe, so an application holds an `Arc<dyn Transport>` built from
//! configuration and never cares whether mail goes over SMTP, an HTTP API or into a folder.
//! Behaviour such as the default sender, timing, retry or failover is a layer around any
//! transport rather than a flag inside each (the shape tower uses for services).

pub mod layer;
mod receipt;

use std::fmt;

use async_trait::async_trait;

use crate::message::PreparedMessage;
use crate::{Error, Message};

pub use receipt::{Receipt, RejectedRecipient};

/// A way of sending messages.
///
/// A transport that was built is configured: construction fails with a
/// [`Config`](crate::ErrorKind::Config) error otherwise, so there is no `is_configured()`.
///
/// Sending happens in two steps. [`prepare`](Transport::prepare) decides the sender and
/// computes the envelope, the Message-ID and the bytes once;
/// [`send_prepared`](Transport::send_prepared) sends that prepared form. [`send`](Transport::send) does both.
/// A layer that retries or fails over prepares once and hands the same [`PreparedMessage`] to
/// every attempt and every transport, so they all send the same message.
///
/// ```
/// use std::sync::Arc;
/// use outbound::{Message, Transport, dev::MemoryTransport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
/// transport.verify().await?;
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let receipt = transport.send(&msg).await?;
/// assert_eq!(receipt.transport, "memory");
/// transport.close().await;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends one message: [`prepare`](Transport::prepare), then
    /// [`send_prepared`](Transport::send_prepared). On success every accepted recipient is
    /// listed in the receipt; a recipient the server refused while others were accepted is
    /// listed in [`Receipt::rejected`], not hidden.
    async fn send(&self, message: &Message) -> Result<Receipt, Error> {
        let prepared = self.prepare(message)?;
        self.send_prepared(&prepared).await
    }

    /// Sends a message prepared earlier, exactly as prepared (same Message-ID, same bytes).
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error>;

    /// Prepares `message` the way this transport would: by default with no default sender
    /// (the message must have a `from`); [`DefaultSender`](layer::DefaultSender) and
    /// transports that send as one mailbox (Graph) supply one. Layers ask the transport they
    /// wrap.
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        Ok(message.prepare(None)?)
    }

    /// Checks that sending could work (connects, authenticates or checks the API key) without
    /// sending anything.
    async fn verify(&self) -> Result<(), Error>;

    /// Releases what the transport holds open (pooled connections, politely with QUIT). The
    /// transport stays usable; later sends open new connections. Call it before shutting
    /// down. The default does nothing.
    async fn close(&self) {}

    /// The largest message this transport can send, in bytes, when it is known before
    /// connecting (an HTTP API's request limit); `None` when only the server can say (SMTP
    /// announces SIZE after EHLO, and the transport checks it before DATA). A caller reading
    /// input from files can refuse what is too large before reading it.
    fn size_limit(&self) -> Option<u64> {
        None
    }

    /// The transport kind, e.g. `smtp`, `resend`, `file`.
    fn kind(&self) -> &'static str;

    /// A one-line description for humans (never containing secrets), e.g.
    /// `smtp://smtp.example.com:587 (starttls)`.
    fn describe(&self) -> String {
        self.kind().to_string()
    }
}
