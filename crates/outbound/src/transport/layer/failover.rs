//! [`Failover`]: an ordered list of transports; the first that works sends.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::members::{Members, DEFAULT_COOLDOWN};
use crate::message::PreparedMessage;
use crate::{Error, Message, Receipt, Transport};

/// Sends through the first transport that works. A member that fails as a transport
/// (unreachable, timing out, refusing the login, `Transient`, `Tls`) is set aside for a
/// cooldown and the next is tried with the same prepared message; after the cooldown the
/// primary is used again. A message the server refused for good (`Permanent`), an invalid
/// message, or an `Ambiguous` outcome (it may have been delivered) is never sent elsewhere.
///
/// The message is prepared by the primary (its default sender), so every member sends the
/// same Message-ID and bytes.
///
/// ```
/// use std::sync::Arc;
/// use outbound::{ErrorKind, Message, Transport, dev::MemoryTransport, layer::Failover};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let (primary, secondary) = (MemoryTransport::new(), MemoryTransport::new());
/// primary.fail_next(ErrorKind::Network, "connection refused");
/// let t = Failover::new(vec![Arc::new(primary.clone()), Arc::new(secondary.clone())]);
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// t.send(&msg).await?;
/// assert_eq!((primary.len(), secondary.len()), (0, 1));
/// assert_eq!(t.describe(), "failover(memory, memory)");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Failover {
    members: Members,
}

impl Failover {
    /// Transports in order of preference; a failed one is set aside for 60 s.
    pub fn new(transports: Vec<Arc<dyn Transport>>) -> Self {
        Failover {
            members: Members::new(transports, DEFAULT_COOLDOWN),
        }
    }

    /// How long a failed member is set aside.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.members = self.members.with_cooldown(cooldown);
        self
    }

    /// The transports, in order.
    pub fn get_ref(&self) -> &[Arc<dyn Transport>] {
        self.members.list()
    }

    /// Unwraps the transports.
    pub fn into_inner(self) -> Vec<Arc<dyn Transport>> {
        self.members.list().to_vec()
    }
}

#[async_trait]
impl Transport for Failover {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        self.members.send("failover", 0, message).await
    }

    /// The primary's preparation (its default sender).
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        self.members.prepare(message)
    }

    /// Ok when at least one member works.
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
        "failover"
    }

    fn describe(&self) -> String {
        self.members.describe("failover")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dev::MemoryTransport;
    use crate::ErrorKind;

    fn msg() -> Message {
        Message::builder()
            .from("a@example.com")
            .to("b@example.com")
            .text("hi")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn comes_back_to_the_primary_after_the_cooldown() {
        let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
        let t = Failover::new(vec![Arc::new(a.clone()), Arc::new(b.clone())])
            .cooldown(Duration::from_millis(200));
        a.fail_next(ErrorKind::Timeout, "no answer");
        let r = t.send(&msg()).await.unwrap();
        assert_eq!(r.attempts, 2);
        t.send(&msg()).await.unwrap(); // the primary is still set aside
        assert_eq!((a.len(), b.len()), (0, 2));
        tokio::time::sleep(Duration::from_millis(250)).await;
        t.send(&msg()).await.unwrap();
        assert_eq!((a.len(), b.len()), (1, 2));
    }

    #[tokio::test]
    async fn the_message_itself_is_never_failed_over() {
        for kind in [
            ErrorKind::Permanent,
            ErrorKind::InvalidMessage,
            ErrorKind::Ambiguous,
        ] {
            let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
            let t = Failover::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
            a.fail_next(kind, "refused");
            assert_eq!(t.send(&msg()).await.unwrap_err().kind(), kind);
            assert_eq!(b.len(), 0, "{kind:?} must not reach the secondary");
        }
    }

    #[tokio::test]
    async fn all_down_reports_the_last_failure_and_tries_again_next_time() {
        let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
        let t = Failover::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
        a.fail_next(ErrorKind::Network, "refused a");
        b.fail_next(ErrorKind::Auth, "535 b");
        let err = t.send(&msg()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        // Both are set aside, but a message is still tried rather than refused.
        t.send(&msg()).await.unwrap();
        assert_eq!(a.len() + b.len(), 1);
    }
}
