//! [`LocalRate`]: the per-process GCRA, what the shared rate falls back to.

use std::sync::Mutex;

use tokio::time::Instant;

use crate::layer::Rate;

/// A GCRA (the token bucket as one timestamp) inside this process: each message is due one
/// emission interval after the previous one, and up to `burst` go at once after a quiet
/// period. Callers reserve their turn in order.
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

    /// Waits until a message may go.
    pub async fn admit(&self) {
        let interval = self.rate.interval();
        let tolerance = interval * (self.rate.burst_size() - 1);
        let start_at = {
            let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let due = tat.map_or(now, |t| t.max(now));
            *tat = Some(due + interval);
            due.checked_sub(tolerance).unwrap_or(now).max(now)
        };
        // Not even a timer when the message may go now: a timer costs a tick (~1 ms).
        if start_at > Instant::now() {
            tokio::time::sleep_until(start_at).await;
        }
    }
}
