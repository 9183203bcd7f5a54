//! [`RateLimit`]: at most so many messages per interval, and at most so many at once.
//!
//! The rate is a GCRA (generic cell rate algorithm, the token bucket as one timestamp): each
//! message is due one emission interval after the previous one, and a burst lets up to
//! `burst` go at once after a quiet period. Every clone shares one limiter, so all senders of
//! one process together stay under the limit. Exchange Online allows 30 messages a minute and
//! 3 concurrent connections per mailbox: [`RateLimit::exchange_online`].
//!
//! [`RateLimit::shared`] holds the rate across processes instead (a [`SharedRate`], e.g. Redis
//! through [`crate::limits`]); the concurrency cap stays per process.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Layer;
use crate::limits::SharedRate;
use crate::message::PreparedMessage;
use crate::{Error, Receipt, Transport};

/// A rate: `count` messages per `per`, with up to `burst` at once.
///
/// ```
/// use std::time::Duration;
/// use outbound::layer::Rate;
/// let r: Rate = "30/min".parse()?;
/// assert_eq!(r.interval(), Duration::from_secs(2));
/// let r: Rate = "10/s,burst=5".parse()?;
/// assert_eq!((r.count(), r.burst_size()), (10, 5));
/// assert!("ten per second".parse::<Rate>().unwrap_err().to_string().contains("10/s"));
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `count` messages per `per`, no burst (evenly spaced). `count` of 0 is taken as 1.
    pub fn new(count: u32, per: Duration) -> Self {
        Rate {
            count: count.max(1),
            per,
            burst: 1,
        }
    }

    /// Up to `burst` messages may go at once after a quiet period (at least 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Messages per interval.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The burst.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The spacing between messages at the steady rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_string(),
            60 => "min".to_string(),
            3600 => "h".to_string(),
            _ => format!("{}s", self.per.as_secs_f64()),
        };
        write!(f, "{}/{unit}", self.count)?;
        if self.burst > 1 {
            write!(f, ",burst={}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = Error;

    /// `N/s`, `N/min`, `N/h` (also `sec`, `second`, `m`, `minute`, `hour`), optionally
    /// followed by `,burst=B`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::config(format!(
                "rate `{s}` is not valid; expected messages per time unit, e.g. `10/s`, \
                 `30/min` or `1000/h`, optionally with a burst: `30/min,burst=5`"
            ))
        };
        let mut parts = s.trim().split(',');
        let head = parts.next().ok_or_else(bad)?;
        let (count, unit) = head.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let mut rate = Rate::new(count, per);
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(bad)?;
            if k.trim() != "burst" {
                return Err(bad());
            }
            let burst: u32 = v.trim().parse().map_err(|_| bad())?;
            if burst == 0 {
                return Err(bad());
            }
            rate = rate.burst(burst);
        }
        Ok(rate)
    }
}

/// The state every clone shares.
#[derive(Debug)]
struct Limiter {
    rate: Option<Rate>,
    /// The theoretical arrival time of the next message (GCRA).
    tat: Mutex<Option<Instant>>,
    concurrent: Option<(usize, Semaphore)>,
    /// When set, the rate is decided there (across processes) instead of by `tat`.
    shared: Option<Arc<dyn SharedRate>>,
}

impl Limiter {
    /// Waits until a message may go at the rate.
    async fn admit(&self) {
        let Some(rate) = self.rate else {
            return;
        };
        let interval = rate.interval();
        let tolerance = interval * (rate.burst - 1);
        let start_at = {
            let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let due = tat.map_or(now, |t| t.max(now));
            // This message may go once `due - tolerance` has passed; reserve its slot now so
            // concurrent callers queue behind it in order.
            *tat = Some(due + interval);
            due.checked_sub(tolerance).unwrap_or(now).max(now)
        };
        // Not even a timer when the message may go now: a timer costs a tick (~1 ms).
        if start_at > Instant::now() {
            tokio::time::sleep_until(start_at).await;
        }
    }
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
    /// Wraps `inner`: at most `rate`, and at most `concurrent` sends at once (`None`: no
    /// limit of that sort).
    pub fn new(inner: T, rate: Option<Rate>, concurrent: Option<usize>) -> Self {
        RateLimit {
            inner,
            limiter: Arc::new(Limiter {
                rate,
                tat: Mutex::new(None),
                concurrent: concurrent.map(|n| (n.max(1), Semaphore::new(n.max(1)))),
                shared: None,
            }),
        }
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
        let mut limited = RateLimit::new(inner, Some(rate), concurrent);
        if let Some(limiter) = Arc::get_mut(&mut limited.limiter) {
            limiter.shared = Some(shared);
        }
        limited
    }

    /// Exchange Online's per-mailbox limits: 30 messages a minute, 3 at once.
    pub fn exchange_online(inner: T) -> Self {
        RateLimit::new(inner, Some(Rate::new(30, Duration::from_secs(60))), Some(3))
    }

    /// The rate, if limited.
    pub fn rate(&self) -> Option<Rate> {
        self.limiter.rate
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
        match &self.limiter.shared {
            Some(shared) => shared.admit().await?,
            None => self.limiter.admit().await,
        }
        self.inner.send_prepared(message).await
    }

    fn describe(&self) -> String {
        let mut limits = Vec::new();
        if let Some(rate) = self.limiter.rate {
            match &self.limiter.shared {
                Some(shared) => limits.push(format!("rate {rate} {}", shared.describe())),
                None => limits.push(format!("rate {rate}")),
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

    #[test]
    fn parses_and_refuses() {
        let r: Rate = "30/min,burst=5".parse().unwrap();
        assert_eq!(r.to_string(), "30/min,burst=5");
        assert_eq!(r.interval(), Duration::from_secs(2));
        assert_eq!(
            "1000/h".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(3600)
        );
        for bad in [
            "",
            "10",
            "0/s",
            "10/week",
            "10/s,burst=0",
            "10/s,bursty=2",
            "x/s",
        ] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.to_string().contains("30/min"), "{bad}: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_steady_rate() {
        let limiter = Limiter {
            rate: Some(Rate::new(10, Duration::from_secs(1)).burst(3)),
            tat: Mutex::new(None),
            concurrent: None,
            shared: None,
        };
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            limiter.admit().await;
            at.push((Instant::now() - t0).as_millis());
        }
        assert_eq!(at, [0, 0, 0, 100, 200, 300]);
    }
}
