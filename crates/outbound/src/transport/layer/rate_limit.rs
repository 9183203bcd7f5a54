//! [`RateLimit`]: at most so many messages per interval, and at most so many at once.
//!
//! The rate is decided through one seam, a [`SharedRate`]: by default [`LocalRate`], the GCRA
//! (generic cell rate algorithm, the token bucket as one timestamp) of this process, where
//! each message is due one emission interval after the previous one and a burst lets up to
//! `burst` go at once after a quiet period. Every clone shares one limiter, so all senders of
//! one process together stay under the limit. Exchange Online allows 30 messages a minute and
//! 3 concurrent connections per mailbox: [`RateLimit::exchange_online`].
//!
//! [`RateLimit::shared`] holds the rate across processes instead (e.g. Redis through
//! [`crate::limits`]); the concurrency cap stays per process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::Layer;
use crate::limits::{LocalRate, SharedRate};
use crate::message::PreparedMessage;
use crate::{Error, Receipt, Transport};

pub use crate::limits::Rate;

/// The state every clone shares.
#[derive(Debug)]
struct Limiter {
    /// The rate, and where it is decided.
    rate: Option<(Rate, Arc<dyn SharedRate>)>,
    concurrent: Option<(usize, Semaphore)>,
}

/// Holds sends to a [`Rate`] and a number of concurrent sends. Clones share the limits.
///
/// ```
/// use std::time::{Duration, Instant};
/// use outbound::{Message, Transport, dev::MemoryTransport, layer::{Rate, RateLimit}};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let t = RateLimit::new(MemoryTransport::new(), Some("20/s".parse()?), Some(2));
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let started = Instant::now();
/// for _ in 0..5 {
///     t.send(&msg).await?;
/// }
/// assert!(started.elapsed() >= Duration::from_millis(200)); // 4 intervals of 50 ms
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit<T> {
    inner: T,
    limiter: Arc<Limiter>,
}

impl<T> RateLimit<T> {
    /// Wraps `inner`: at most `rate` in this process (a [`LocalRate`]), and at most
    /// `concurrent` sends at once (`None`: no limit of that sort).
    pub fn new(inner: T, rate: Option<Rate>, concurrent: Option<usize>) -> Self {
        let gate = rate.map(|rate| (rate, Arc::new(LocalRate::new(rate)) as Arc<dyn SharedRate>));
        RateLimit::with_gate(inner, gate, concurrent)
    }

    /// Wraps `inner`: at most `rate` across every process that shares `shared` (each decision
    /// is made there; see [`crate::limits`]), and at most `concurrent` sends at once in this
    /// process.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use outbound::{dev::MemoryTransport, layer::{Rate, RateLimit}};
    /// use outbound::limits::{FailPolicy, SharedLimits};
    /// let rate: Rate = "30/min".parse()?;
    /// let limits = SharedLimits::new("redis://127.0.0.1:6379", FailPolicy::Local)?;
    /// let t = RateLimit::shared(MemoryTransport::new(), rate, limits.rate("mailbox-id", rate), None);
    /// assert_eq!(outbound::Transport::describe(&t), "memory (rate 30/min shared through redis://127.0.0.1:6379)");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn shared(
        inner: T,
        rate: Rate,
        shared: Arc<dyn SharedRate>,
        concurrent: Option<usize>,
    ) -> Self {
        RateLimit::with_gate(inner, Some((rate, shared)), concurrent)
    }

    fn with_gate(
        inner: T,
        rate: Option<(Rate, Arc<dyn SharedRate>)>,
        concurrent: Option<usize>,
    ) -> Self {
        RateLimit {
            inner,
            limiter: Arc::new(Limiter {
                rate,
                concurrent: concurrent.map(|n| (n.max(1), Semaphore::new(n.max(1)))),
            }),
        }
    }

    /// Exchange Online's per-mailbox limits: 30 messages a minute, 3 at once.
    pub fn exchange_online(inner: T) -> Self {
        RateLimit::new(inner, Some(Rate::new(30, Duration::from_secs(60))), Some(3))
    }

    /// The rate, if limited.
    pub fn rate(&self) -> Option<Rate> {
        self.limiter.rate.as_ref().map(|(rate, _)| *rate)
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
impl<T: Transport> Layer for RateLimit<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let _permit = match &self.limiter.concurrent {
            // The semaphore is never closed, so acquiring cannot fail; no permit means no cap.
            Some((_, sem)) => sem.acquire().await.ok(),
            None => None,
        };
        if let Some((_, gate)) = &self.limiter.rate {
            // A gate that decides here (the local GCRA) reserves the turn at once; one that
            // decides elsewhere (Redis) is awaited.
            match gate.reserve() {
                // Not even a timer when the message may go now: a timer costs a tick (~1 ms).
                Some(wait) if wait.is_zero() => {}
                Some(wait) => tokio::time::sleep(wait).await,
                None => gate.admit().await?,
            }
        }
        self.inner.send_prepared(message).await
    }

    fn describe(&self) -> String {
        let mut limits = Vec::new();
        if let Some((rate, gate)) = &self.limiter.rate {
            let held = gate.describe();
            if held.is_empty() {
                limits.push(format!("rate {rate}"));
            } else {
                limits.push(format!("rate {rate} {held}"));
            }
        }
        if let Some((n, _)) = &self.limiter.concurrent {
            limits.push(format!("at most {n} at once"));
        }
        format!("{} ({})", self.inner.describe(), limits.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::time::Instant;

    /// The burst through the layer: the GCRA's own test is in `limits/gcra.rs`.
    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_steady_rate_through_the_layer() {
        let t = RateLimit::new(
            super::super::testing::Scripted::default(),
            Some(Rate::new(10, Duration::from_secs(1)).burst(3)),
            None,
        );
        let message = super::super::testing::prepared();
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            Transport::send_prepared(&t, &message).await.unwrap();
            at.push((Instant::now() - t0).as_millis());
        }
        assert_eq!(at, [0, 0, 0, 100, 200, 300]);
    }

    /// A rate decided elsewhere (as Redis's is) is awaited, and its refusal (Redis
    /// unreachable past `MAIL_LIMITS_FAIL=wait`) fails the send before anything is sent.
    #[tokio::test]
    async fn a_rate_decided_elsewhere_is_awaited_and_its_refusal_sends_nothing() {
        #[derive(Debug, Default)]
        struct Elsewhere {
            asked: std::sync::atomic::AtomicUsize,
        }
        #[async_trait]
        impl SharedRate for Elsewhere {
            async fn admit(&self) -> Result<(), Error> {
                match self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => Ok(()),
                    _ => Err(Error::new(crate::ErrorKind::Transient, "unreachable")),
                }
            }
            fn describe(&self) -> String {
                "shared through elsewhere".into()
            }
        }
        let inner = super::super::testing::Scripted::default();
        let gate = Arc::new(Elsewhere::default());
        let rate = Rate::new(1, Duration::from_secs(1));
        let t = RateLimit::shared(inner.clone(), rate, gate.clone(), Some(2));
        let message = super::super::testing::prepared();
        Transport::send_prepared(&t, &message).await.unwrap();
        let err = Transport::send_prepared(&t, &message).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Transient);
        assert_eq!(inner.len(), 1);
        assert_eq!(t.rate(), Some(rate));
        assert_eq!(
            Transport::describe(&t),
            "memory (rate 1/s shared through elsewhere, at most 2 at once)"
        );
    }
}
