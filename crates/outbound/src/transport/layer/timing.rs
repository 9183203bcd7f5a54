//! [`Timed`]: how long a send took, from its start to success, written into the receipt.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Layer;
use crate::message::PreparedMessage;
use crate::{Error, Receipt, Transport};

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
impl<T: Transport> Layer for Timed<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let started = Instant::now();
        let mut receipt = self.inner.send_prepared(message).await?;
        // Never zero: "took no time" would read as "not measured".
        receipt.elapsed = started.elapsed().max(Duration::from_nanos(1));
        Ok(receipt)
    }
}
