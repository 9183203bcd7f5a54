//! [`Timed`]: how long a send took, from its start to success, written into the receipt.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::message::PreparedMessage;
use crate::{Error, Message, Receipt, Transport};

/// Sets [`Receipt::elapsed`] to the time the whole send took below this layer: placed
/// outermost, that is from the first attempt to success, retries and failovers included.
/// Transports themselves do not time (so a retried send is not timed per attempt).
///
/// ```
/// use outbound::{Message, Transport, dev::MemoryTransport, layer::Timed};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let t = Timed::new(MemoryTransport::new());
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let receipt = t.send(&msg).await?;
/// assert!(receipt.elapsed > std::time::Duration::ZERO);
/// let _memory: &MemoryTransport = t.get_ref();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Timed<T> {
    inner: T,
}

impl<T> Timed<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Timed { inner }
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

#[async_trait]
impl<T: Transport> Transport for Timed<T> {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let started = Instant::now();
        let mut receipt = self.inner.send_prepared(message).await?;
        // Never zero: "took no time" would read as "not measured".
        receipt.elapsed = started.elapsed().max(Duration::from_nanos(1));
        Ok(receipt)
    }

    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        self.inner.prepare(message)
    }

    async fn verify(&self) -> Result<(), Error> {
        self.inner.verify().await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    fn size_limit(&self) -> Option<u64> {
        self.inner.size_limit()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
