//! [`Retry`]: sending again after a failure that cannot have delivered the message.
//!
//! Why it is careful: a retry after the server may have accepted the message sends it twice.
//! So only the kinds that say "nothing was delivered" are retried (`Transient`, `Timeout`,
//! `Network`: the transports decide those by phase), never `Ambiguous` unless the caller
//! says the transport's requests are idempotent (Resend, with its Idempotency-Key). Waits
//! grow exponentially with full jitter (so many senders do not retry in step), honour the
//! server's `Retry-After`, and all of it fits in one total deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Layer;
use crate::message::PreparedMessage;
use crate::{Error, ErrorKind, Receipt, Transport};

/// When and how often [`Retry`] sends again.
///
/// ```
/// use std::time::Duration;
/// use outbound::layer::RetryPolicy;
/// let p = RetryPolicy::new(3)
///     .backoff(Duration::from_millis(200), Duration::from_secs(5))
///     .deadline(Duration::from_secs(60));
/// assert_eq!(p.retries(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    retries: u32,
    base: Duration,
    max_delay: Duration,
    deadline: Duration,
    retry_ambiguous: bool,
}

impl Default for RetryPolicy {
    /// 3 retries, waits from 500 ms up to 10 s, all within 60 s.
    fn default() -> Self {
        RetryPolicy::new(3)
    }
}

impl RetryPolicy {
    /// Up to `retries` sends after the first (0: never retry), waits from 500 ms up to 10 s,
    /// everything within 60 s.
    pub fn new(retries: u32) -> Self {
        RetryPolicy {
            retries,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            retry_ambiguous: false,
        }
    }

    /// The first wait is up to `base`; each further one up to twice the last, at most `max`.
    /// The actual wait is random below that bound (full jitter).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max_delay = max.max(base);
        self
    }

    /// The time from the first attempt after which no retry starts; a `Retry-After` that
    /// would end later is not waited for.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Also retry [`ErrorKind::Ambiguous`] failures. Only for a transport whose requests are
    /// idempotent (the provider drops a repeated request), or the message may arrive twice.
    pub fn retry_ambiguous(mut self, yes: bool) -> Self {
        self.retry_ambiguous = yes;
        self
    }

    /// How many sends after the first.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Whether `err` may be retried under this policy.
    pub fn allows(&self, err: &Error) -> bool {
        err.is_retryable() || (self.retry_ambiguous && err.kind() == ErrorKind::Ambiguous)
    }

    /// The random wait before retry number `retry` (1-based): full jitter below the
    /// exponential bound.
    fn jittered(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let bound = self.base.saturating_mul(factor).min(self.max_delay);
        let mut bytes = [0u8; 8];
        // Without randomness, wait the whole bound: still correct, just in step.
        let fraction = match getrandom::fill(&mut bytes) {
            Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 1.0,
        };
        bound.mul_f64(fraction)
    }
}

/// Sends again, under a [`RetryPolicy`], after failures that cannot have delivered the
/// message; counts every attempt in [`Receipt::attempts`]. Every attempt sends the same
/// prepared message (same Message-ID, same bytes, same idempotency key).
///
/// ```
/// use outbound::{ErrorKind, Message, Transport, dev::MemoryTransport};
/// use outbound::layer::{Retry, RetryPolicy};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let memory = MemoryTransport::new();
/// memory.fail_next(ErrorKind::Transient, "451 try later");
/// let t = Retry::new(memory.clone(), RetryPolicy::new(2).backoff(Duration::ZERO, Duration::ZERO));
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// let receipt = t.send(&msg).await?;
/// assert_eq!(receipt.attempts, 2);
///
/// memory.fail_next(ErrorKind::Ambiguous, "connection lost after the final dot");
/// assert_eq!(t.send(&msg).await.unwrap_err().kind(), ErrorKind::Ambiguous); // never resent
/// assert_eq!(memory.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Retry<T> {
    inner: T,
    policy: RetryPolicy,
}

impl<T> Retry<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, policy: RetryPolicy) -> Self {
        Retry { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
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
impl<T: Transport> Layer for Retry<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let started = Instant::now();
        let transport = self.inner.kind();
        let message_id = message.message_id();
        // Attempts that failed below this layer, each counted once.
        let mut failed = 0u32;
        loop {
            let attempt = failed + 1;
            let err = match self.inner.send_prepared(message).await {
                Ok(mut receipt) => {
                    receipt.attempts += failed;
                    if failed > 0 {
                        tracing::info!(
                            transport,
                            message_id,
                            attempts = receipt.attempts,
                            "delivered after retrying"
                        );
                    }
                    return Ok(receipt);
                }
                Err(err) => err,
            };
            failed += 1;
            let code = err.code().map(ToString::to_string);
            if !self.policy.allows(&err) {
                tracing::debug!(transport, message_id, attempt, kind = %err.kind().as_str(),
                    code, "not retrying: {}", retry_refusal(&err));
                return Err(err);
            }
            if failed > self.policy.retries {
                tracing::warn!(transport, message_id, attempt, kind = %err.kind().as_str(), code,
                    "giving up after {attempt} attempts");
                return Err(err);
            }
            let mut delay = self.policy.jittered(failed);
            if let Some(asked) = err.retry_after() {
                delay = delay.max(asked);
            }
            let left = self.policy.deadline.saturating_sub(started.elapsed());
            if delay >= left {
                tracing::warn!(transport, message_id, attempt, kind = %err.kind().as_str(), code,
                    delay_ms = delay.as_millis() as u64,
                    "giving up: the next attempt would start after the retry deadline");
                return Err(err);
            }
            tracing::warn!(transport, message_id, attempt, kind = %err.kind().as_str(), code,
                delay_ms = delay.as_millis() as u64, "send failed; retrying: {err}");
            tokio::time::sleep(delay).await;
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (retries {})",
            self.inner.describe(),
            self.policy.retries
        )
    }
}

fn retry_refusal(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Ambiguous => "the message may have been delivered",
        ErrorKind::Permanent => "the server refused it for good",
        ErrorKind::InvalidMessage => "the message is invalid",
        _ => "a retry would not help",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_the_exponential_bound() {
        let p = RetryPolicy::new(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        for retry in 1..=10 {
            let bound = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(p.jittered(retry) <= bound, "retry {retry}");
            }
        }
        // Far retries saturate instead of overflowing.
        assert!(p.jittered(200) <= Duration::from_secs(1));
    }

    #[test]
    fn only_safe_kinds_are_allowed() {
        let p = RetryPolicy::new(1);
        let e = |k| Error::new(k, "x");
        assert!(p.allows(&e(ErrorKind::Transient)));
        assert!(p.allows(&e(ErrorKind::Timeout)));
        assert!(p.allows(&e(ErrorKind::Network)));
        for k in [
            ErrorKind::Ambiguous,
            ErrorKind::Permanent,
            ErrorKind::Auth,
            ErrorKind::Config,
            ErrorKind::InvalidMessage,
            ErrorKind::Tls,
        ] {
            assert!(!p.allows(&e(k)), "{k:?}");
        }
        assert!(p.retry_ambiguous(true).allows(&e(ErrorKind::Ambiguous)));
    }
}
