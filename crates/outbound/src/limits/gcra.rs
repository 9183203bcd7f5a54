//! [`LocalRate`]: the one GCRA of Outbound, deciding in this process. `layer::RateLimit`
//! decides through it by default, and the Redis rate falls back to it while Redis is
//! unreachable (`MAIL_LIMITS_FAIL=local`). Redis's own decision is the same
//! algorithm in one Lua script (`gcra.lua`), fed the same interval and tolerance.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Rate, SharedRate};
use crate::Error;

/// A GCRA (generic cell rate algorithm: the token bucket as one timestamp) inside this
/// process: each message is due one emission interval after the previous one, and up to
/// `burst` go at once after a quiet period. Callers reserve their turn in order, so
/// concurrent senders queue behind each other rather than race.
///
/// ```
/// use outbound::limits::LocalRate;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let rate = LocalRate::new("1000/s,burst=2".parse()?);
/// let started = std::time::Instant::now();
/// for _ in 0..4 {
///     rate.admit().await;
/// }
/// assert!(started.elapsed() >= std::time::Duration::from_millis(2));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalRate {
    rate: Rate,
    /// The theoretical arrival time of the next message.
    tat: Mutex<Option<Instant>>,
}

impl LocalRate {
    /// A limiter at `rate`.
    pub fn new(rate: Rate) -> Self {
        LocalRate {
            rate,
            tat: Mutex::new(None),
        }
    }

    /// The rate it holds.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits until a message may go.
    pub async fn admit(&self) {
        let (start_at, _) = self.reserve_at();
        // Not even a timer when the message may go now: a timer costs a tick (~1 ms).
        if start_at > Instant::now() {
            tokio::time::sleep_until(start_at).await;
        }
    }

    /// Reserves the next turn: when it is, and the time the decision was made at.
    fn reserve_at(&self) -> (Instant, Instant) {
        let interval = self.rate.interval();
        let tolerance = self.rate.tolerance();
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let due = tat.map_or(now, |t| t.max(now));
        // This message may go once `due - tolerance` has passed; its slot is taken now, so
        // concurrent callers queue behind it in order.
        *tat = Some(due + interval);
        (due.checked_sub(tolerance).unwrap_or(now).max(now), now)
    }
}

#[async_trait]
impl SharedRate for LocalRate {
    async fn admit(&self) -> Result<(), Error> {
        LocalRate::admit(self).await;
        Ok(())
    }

    fn reserve(&self) -> Option<Duration> {
        let (start_at, now) = self.reserve_at();
        Some(start_at.saturating_duration_since(now))
    }

    fn describe(&self) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_steady_rate() {
        let limiter = LocalRate::new(Rate::new(10, Duration::from_secs(1)).burst(3));
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            limiter.admit().await;
            at.push((Instant::now() - t0).as_millis());
        }
        assert_eq!(at, [0, 0, 0, 100, 200, 300]);
    }
}
