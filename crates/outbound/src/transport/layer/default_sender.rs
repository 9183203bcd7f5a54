//! [`DefaultSender`]: the sender for messages that have none (Dify's default sender).

use super::Layer;
use crate::message::PreparedMessage;
use crate::{Error, Mailbox, Message, Transport};

/// Sends messages that have no `from` as a configured sender. It does so by preparing them:
/// the Message-ID's domain and the envelope follow the sender, and every layer above asks this
/// one to prepare, so a retry or a failover keeps the same id.
///
/// ```
/// use outbound::{Message, Transport, dev::MemoryTransport, layer::DefaultSender};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let t = DefaultSender::new(MemoryTransport::new(), "app@example.com".parse()?);
/// assert_eq!(t.sender().email(), "app@example.com");
/// let msg = Message::builder().to("ada@example.com").text("hi").build()?;
/// assert_eq!(t.prepare(&msg)?.sender().email(), "app@example.com");
/// let own = Message::builder().from("me@example.org").to("ada@example.com").text("hi").build()?;
/// assert_eq!(t.prepare(&own)?.sender().email(), "me@example.org");
/// let memory: MemoryTransport = t.into_inner();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DefaultSender<T> {
    inner: T,
    sender: Mailbox,
}

impl<T> DefaultSender<T> {
    /// Wraps `inner`; messages without `from` are sent as `sender`.
    pub fn new(inner: T, sender: Mailbox) -> Self {
        DefaultSender { inner, sender }
    }

    /// The default sender.
    pub fn sender(&self) -> &Mailbox {
        &self.sender
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Unwraps the transport.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Transport> Layer for DefaultSender<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    /// The message's own `from`, else this layer's sender. (The wrapped transport's own
    /// preparation is not consulted: this layer decides the sender.)
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        Ok(message.prepare(Some(&self.sender))?)
    }
}
