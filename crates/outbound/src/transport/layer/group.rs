//! [`Group`]: several transports sending as one, under a [`Pick`] that decides which member a
//! message starts at. [`Failover`] starts every message at the first member ([`First`]),
//! [`RoundRobin`] each at the next ([`Rotate`]); everything else (the cooldown, which failures
//! move on, the order after the start) is the same and lives in `members.rs`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::members::{Members, DEFAULT_COOLDOWN};
use crate::message::PreparedMessage;
use crate::{Error, Message, Receipt, Transport};

/// Which member of a [`Group`] a message starts at. A member that fails as a transport moves
/// the message on to the following one, wrapping around, whatever the pick.
///
/// ```
/// use std::sync::Arc;
/// use outbound::{Message, Transport, dev::MemoryTransport, layer::{Group, Pick}};
///
/// /// Every message starts at the last member.
/// #[derive(Debug, Default)]
/// struct Last;
///
/// impl Pick for Last {
///     const KIND: &'static str = "last";
///     fn first(&self, members: usize) -> usize {
///         members.saturating_sub(1)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let (a, b) = (MemoryTransport::new(), MemoryTransport::new());
/// let t: Group<Last> = Group::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// t.send(&msg).await?;
/// assert_eq!((a.len(), b.len()), (0, 1));
/// assert_eq!(t.describe(), "last(memory, memory)");
/// # Ok(()) }
/// ```
pub trait Pick: Default + Send + Sync + fmt::Debug {
    /// The group's [`kind`](Transport::kind) and its name in descriptions, e.g. `failover`.
    const KIND: &'static str;

    /// The index of the member the next message starts at, below `members` (at least 1).
    fn first(&self, members: usize) -> usize;
}

/// Every message starts at the first member: [`Failover`].
#[derive(Debug, Default, Clone, Copy)]
pub struct First;

impl Pick for First {
    const KIND: &'static str = "failover";

    fn first(&self, _members: usize) -> usize {
        0
    }
}

/// Each message starts at the member after the one the previous message started at:
/// [`RoundRobin`].
#[derive(Debug, Default)]
pub struct Rotate {
    next: AtomicUsize,
}

impl Pick for Rotate {
    const KIND: &'static str = "roundrobin";

    fn first(&self, members: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % members.max(1)
    }
}

/// Transports sending as one: each message starts at the member `P` picks. A member that
/// fails as a transport (unreachable, timing out, refusing the login, `Transient`, `Tls`) is
/// set aside for a cooldown and the following one is tried with the same prepared message;
/// after the cooldown it is used again. A message the server refused for good (`Permanent`),
/// an invalid message, or an `Ambiguous` outcome (it may have been delivered) is never sent
/// elsewhere.
///
/// The message is prepared by the first member (its default sender), so every member sends
/// the same Message-ID and bytes. Use it as [`Failover`] or [`RoundRobin`].
#[derive(Debug)]
pub struct Group<P> {
    members: Members,
    pick: P,
}

/// Sends through the first transport that works: a [`Group`] that starts every message at
/// the first member ([`First`]). After a member's cooldown, the primary is used again.
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
pub type Failover = Group<First>;

/// Sends each message through the next transport in turn: a [`Group`] that starts each
/// message at the next member ([`Rotate`]). A member that fails as a transport is set aside
/// for a cooldown (as in [`Failover`]) and the message goes to the following one; the same
/// rules keep a refused, invalid or possibly delivered message from being sent elsewhere.
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
pub type RoundRobin = Group<Rotate>;

impl<P: Pick> Group<P> {
    /// The transports, in order; a failed one is set aside for 60 s.
    pub fn new(transports: Vec<Arc<dyn Transport>>) -> Self {
        Group {
            members: Members::new(transports, DEFAULT_COOLDOWN),
            pick: P::default(),
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
impl<P: Pick> Transport for Group<P> {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let first = self.pick.first(self.members.len().max(1));
        self.members.send(P::KIND, first, message).await
    }

    /// The first member's preparation (its default sender), whichever member sends: one
    /// identity per message.
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
        P::KIND
    }

    fn describe(&self) -> String {
        self.members.describe(P::KIND)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::{message as msg, Scripted};
    use super::*;
    use crate::ErrorKind;

    fn pair(a: &Scripted, b: &Scripted) -> Vec<Arc<dyn Transport>> {
        vec![Arc::new(a.clone()), Arc::new(b.clone())]
    }

    #[tokio::test]
    async fn failover_comes_back_to_the_primary_after_the_cooldown() {
        let (a, b) = (Scripted::default(), Scripted::default());
        let t = Failover::new(pair(&a, &b)).cooldown(Duration::from_millis(200));
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
    async fn failover_never_moves_the_message_itself_on() {
        for kind in [
            ErrorKind::Permanent,
            ErrorKind::InvalidMessage,
            ErrorKind::Ambiguous,
        ] {
            let (a, b) = (Scripted::default(), Scripted::default());
            let t = Failover::new(pair(&a, &b));
            a.fail_next(kind, "refused");
            assert_eq!(t.send(&msg()).await.unwrap_err().kind(), kind);
            assert_eq!(b.len(), 0, "{kind:?} must not reach the secondary");
        }
    }

    #[tokio::test]
    async fn failover_all_down_reports_the_last_failure_and_tries_again_next_time() {
        let (a, b) = (Scripted::default(), Scripted::default());
        let t = Failover::new(pair(&a, &b));
        a.fail_next(ErrorKind::Network, "refused a");
        b.fail_next(ErrorKind::Auth, "535 b");
        let err = t.send(&msg()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        // Both are set aside, but a message is still tried rather than refused.
        t.send(&msg()).await.unwrap();
        assert_eq!(a.len() + b.len(), 1);
    }

    #[tokio::test]
    async fn round_robin_skips_a_failed_member_until_its_cooldown_ends() {
        let (a, b) = (Scripted::default(), Scripted::default());
        let t = RoundRobin::new(pair(&a, &b)).cooldown(Duration::from_secs(30));
        a.fail_next(ErrorKind::Network, "refused");
        for _ in 0..4 {
            t.send(&msg()).await.unwrap();
        }
        assert_eq!((a.len(), b.len()), (0, 4));
        assert_eq!(t.members.cooldown(), Duration::from_secs(30));
    }

    #[test]
    fn the_picks_start_where_their_names_say() {
        assert_eq!([0, 1, 2].map(|_| First.first(3)), [0, 0, 0]);
        let rotate = Rotate::default();
        assert_eq!([0, 1, 2, 3].map(|_| rotate.first(3)), [0, 1, 2, 0]);
        assert_eq!(
            (Failover::new(vec![]).kind(), RoundRobin::new(vec![]).kind()),
            ("failover", "roundrobin")
        );
    }
}
