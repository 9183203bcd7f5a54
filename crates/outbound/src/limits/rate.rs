//! [`Rate`], the value every rate limit is set in, and [`SharedRate`], the one seam a rate
//! limit decides through: [`LocalRate`](super::LocalRate) (this process's GCRA, the default)
//! or Redis (`SharedLimits::rate`, feature `shared-limits`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

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

    /// How far ahead of its steady-rate turn a message may go: `burst - 1` intervals (the
    /// GCRA's tolerance, in this process and in Redis alike).
    pub(crate) fn tolerance(&self) -> Duration {
        self.interval() * (self.burst - 1)
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

/// Where a rate limit decides whether the next message may go: the one seam of
/// `outbound::layer::RateLimit`. [`LocalRate`](super::LocalRate), the GCRA of this
/// process, is the default; Redis holds the rate across processes (`SharedLimits::rate`,
/// feature `shared-limits`).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use outbound::limits::{LocalRate, SharedRate};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let rate: Arc<dyn SharedRate> = Arc::new(LocalRate::new("1000/s".parse()?));
/// rate.admit().await?; // the first message goes at once
/// // The in-process GCRA decides without waiting: the next turn is about 1 ms away.
/// assert!(rate.reserve().is_some_and(|wait| wait <= Duration::from_millis(1)));
/// assert_eq!(rate.describe(), ""); // nothing to add to "rate 1000/s"
/// # Ok(()) }
/// ```
#[async_trait]
pub trait SharedRate: Send + Sync + fmt::Debug {
    /// Waits until one more message may go.
    async fn admit(&self) -> Result<(), Error>;

    /// Reserves the next message's turn without waiting, when this limiter decides in this
    /// process: how long until that turn. `None` (the default) when the decision is made
    /// elsewhere: call [`admit`](SharedRate::admit). `layer::RateLimit` asks this first, so
    /// the in-process rate costs no allocation per message.
    fn reserve(&self) -> Option<Duration> {
        None
    }

    /// Where the rate is held, as words that follow the rate in a description: empty for
    /// this process's own, e.g. `shared through redis://127.0.0.1:6379/` for Redis.
    fn describe(&self) -> String;
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
}
