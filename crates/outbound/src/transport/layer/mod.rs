//! Layers: behaviour that wraps any [`Transport`] and is itself one.
//!
//! Every layer has the same shape, the one tower gives its middleware: a struct built around
//! the transport it wraps (`Layer::new(inner, …)`), with [`get_ref`](DefaultSender::get_ref)
//! and [`into_inner`](DefaultSender::into_inner). It implements [`Layer`], the one forwarding
//! core (`forward.rs`): it names the wrapped transport and writes only the methods it changes;
//! the rest forward, and one generic impl makes it a [`Transport`]. [`TransportExt`] adds the
//! one-line way to stack layers.
//!
//! Rules every layer keeps (the core's defaults keep them; a layer that writes one of these
//! methods keeps them by hand):
//! - [`Transport::prepare`] is forwarded (or, for [`DefaultSender`], supplied), so the
//!   outermost caller prepares once with the right sender;
//! - the same [`PreparedMessage`](crate::message::PreparedMessage) goes to every attempt and
//!   every transport below, never a re-prepared copy;
//! - [`Transport::close`] is forwarded, so an `Arc<dyn Transport>` can shut its pools down.
//!
//! Where each behaviour lives:
//! - the forwarding core: [`forward.rs`](Layer) (also `Arc<T>` and `Box<T>` as transports,
//!   forwarding everything);
//! - the default sender: [`default_sender.rs`](DefaultSender);
//! - time from the first attempt to success ([`Receipt::elapsed`](crate::Receipt::elapsed)):
//!   [`timing.rs`](Timed);
//! - sending again after a failure that delivered nothing: [`retry.rs`](Retry);
//! - several transports as one: [`group.rs`](Group), with a [`Pick`] for the member a message
//!   starts at: [`Failover`] (the first that works) and [`RoundRobin`] (in turns); what every
//!   group does with its members (the cooldown, which failures move on): `members.rs`;
//! - messages per interval and sends at once: [`rate_limit.rs`](RateLimit), deciding through
//!   [`crate::limits::SharedRate`] (this process's GCRA unless shared).
//!
//! The usual stack, outermost first: `Timed`, `Retry`, `RateLimit`, the transport (or
//! `Failover` of transports), so each retry waits its turn and the time covers everything.

mod default_sender;
mod forward;
mod group;
mod members;
mod rate_limit;
mod retry;
#[cfg(test)]
mod testing;
mod timing;

pub use default_sender::DefaultSender;
pub use forward::Layer;
pub use group::{Failover, First, Group, Pick, Rotate, RoundRobin};
pub use members::DEFAULT_COOLDOWN;
pub use rate_limit::{Rate, RateLimit};
pub use retry::{Retry, RetryPolicy};
pub use timing::Timed;

use crate::{Mailbox, Transport};

/// Stacks layers around a transport in one line.
///
/// ```
/// use outbound::{Message, Transport, TransportExt, dev::MemoryTransport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let memory = MemoryTransport::new();
/// let transport = memory.clone()
///     .with_default_sender("App <app@example.com>".parse()?)
///     .timed();
/// let msg = Message::builder().to("ada@example.com").text("hi").build()?;
/// let receipt = transport.send(&msg).await?;
/// assert!(receipt.message_id.ends_with("@example.com>"));
/// assert_eq!(memory.last().unwrap().envelope.from, "app@example.com");
/// # Ok(()) }
/// ```
pub trait TransportExt: Transport + Sized {
    /// Messages without a `from` are sent as `sender` (see [`DefaultSender`]).
    fn with_default_sender(self, sender: Mailbox) -> DefaultSender<Self> {
        DefaultSender::new(self, sender)
    }

    /// Receipts carry the time from the start of the send to success (see [`Timed`]).
    fn timed(self) -> Timed<Self> {
        Timed::new(self)
    }

    /// Sends again after failures that delivered nothing (see [`Retry`]).
    fn with_retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry::new(self, policy)
    }

    /// At most `rate` messages, and at most `concurrent` at once (see [`RateLimit`]).
    fn with_rate_limit(self, rate: Option<Rate>, concurrent: Option<usize>) -> RateLimit<Self> {
        RateLimit::new(self, rate, concurrent)
    }
}

impl<T: Transport + Sized> TransportExt for T {}
