//! [`RoundRobin`]: messages spread across transports in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::members::{Members, DEFAULT_COOLDOWN};
use crate::message::PreparedMessage;
use crate::{Error, Message, Receipt, Transport};

/// Sends each message through the next transport in turn. A member that fails as a transport
/// is set aside for a cooldown (as in [`Failover`](super::Failover)) and the message goes to
/// the following one; the same rules keep a refused, invalid or possibly delivered message
/// from being sent elsewhere.
///
/// ```
/// use std::sync::Arc;
/// use outbound::{Message, Transport, dev::MemoryTransport, layer::RoundRobin};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
/// let t = RoundRobin::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// for _ in 0..4 {
///     t.send(&msg).await?;
/// }
/// assert_eq!((a.len(), b.len()), (2, 2));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RoundRobin {
    members: Members,
    next: AtomicUsize,
}

impl RoundRobin {
    /// The transports to take turns; a failed one is set aside for 60 s.
    pub fn new(transports: Vec<Arc<dyn Transport>>) -> Self {
        RoundRobin {
            members: Members::new(transports, DEFAULT_COOLDOWN),
            next: AtomicUsize::new(0),
        }
    }

    /// How long a failed member is set aside.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.members = self.members.with_cooldown(cooldown);
        self
    }

    /// The transports.
    pub fn get_ref(&self) -> &[Arc<dyn Transport>] {
        self.members.list()
    }

    /// Unwraps the transports.
    pub fn into_inner(self) -> Vec<Arc<dyn Transport>> {
        self.members.list().to_vec()
    }
}

#[async_trait]
impl Transport for RoundRobin {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let n = self.members.len().max(1);
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.members.send("roundrobin", first, message).await
    }

    /// The first member's preparation, whichever member sends: one identity per message.
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        self.members.prepare(message)
    }

    async fn verify(&self) -> Result<(), Error> {
        self.members.verify().await
    }

    async fn close(&self) {
        self.members.close().await
    }

    /// The first member's: it is the one that prepares, and usually the one that sends.
    fn size_limit(&self) -> Option<u64> {
        self.members.size_limit()
    }

    fn kind(&self) -> &'static str {
        "roundrobin"
    }

    fn describe(&self) -> String {
        self.members.describe("roundrobin")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dev::MemoryTransport;
    use crate::ErrorKind;

    #[tokio::test]
    async fn a_failed_member_is_skipped_until_its_cooldown_ends() {
        let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
        let t = RoundRobin::new(vec![Arc::new(a.clone()), Arc::new(b.clone())])
            .cooldown(Duration::from_secs(30));
        let msg = Message::builder()
            .from("a@example.com")
            .to("b@example.com")
            .text("hi")
            .build()
            .unwrap();
        a.fail_next(ErrorKind::Network, "refused");
        for _ in 0..4 {
            t.send(&msg).await.unwrap();
        }
        assert_eq!((a.len(), b.len()), (0, 4));
        assert_eq!(t.members.cooldown(), Duration::from_secs(30));
    }
}
