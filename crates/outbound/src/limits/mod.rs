//! Limits shared by every process that sends as one account: the connection cap and the rate,
//! held in Redis so that ten workers with a pool of 3 open 3 connections between them, not 30.
//!
//! Two things are shared, each behind a small trait so the layer or the pool that enforces it
//! does not know where the count lives:
//!
//! - [`ConnectionSlots`]: a cluster-wide semaphore per (server, account). The SMTP pool takes a
//!   [`ConnectionLease`] before it opens a connection and holds it while the connection lives.
//!   The same trait is the pool's own cap in one process ([`LocalSlots`], its default); a
//!   shared cap is held within it, one lease for both. In Redis a lease is a member of a sorted set scored by its expiry; the holder renews it
//!   while the connection lives, so a process that dies (even `kill -9`) loses its slots
//!   within the lease time. Waiters queue in ticket order, and a holder gives its slot back
//!   after its current message when others wait, so no process starves.
//! - [`SharedRate`]: the one seam every rate limit decides through (`rate.rs`). Its default is
//!   [`LocalRate`], the one GCRA (`gcra.rs`), in this process; in Redis it is the same GCRA as
//!   one atomic Lua script per decision, on Redis's clock (so the machines' clocks need not
//!   agree).
//!
//! When Redis is unreachable or slow, [`FailPolicy`] decides: `local` (the default) falls back
//! to per-process limits with a loud warning, `wait` waits a bounded time for Redis and then
//! fails the send with a temporary error (nothing sent, so nothing lost). Either way the
//! shared limits hold again once Redis answers: leases granted meanwhile ask Redis for a real
//! slot, and a connection that cannot get one is closed after its current message.
//!
//! Keys (`{…}` is a Redis Cluster hash tag; `ID` is the first 32 hex digits of a SHA-256 of
//! the account's identity, so no host name, user name or secret is stored):
//!
//! | key | type | what |
//! |---|---|---|
//! | `outbound:v1:conn:{ID}:holders` | sorted set | lease id → expiry (ms, Redis time) |
//! | `outbound:v1:conn:{ID}:queue` | sorted set | waiter id → ticket (FIFO order) |
//! | `outbound:v1:conn:{ID}:waiting` | sorted set | waiter id → expiry (a dead waiter drops out) |
//! | `outbound:v1:conn:{ID}:ticket` | string | the ticket counter |
//! | `outbound:v1:rate:{ID}` | string | the GCRA's theoretical arrival time (µs, Redis time) |
//!
//! Every key expires on its own when unused.

mod gcra;
mod lease;
mod rate;
#[cfg(feature = "shared-limits")]
mod redis;
mod slots;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

pub use gcra::LocalRate;
pub use lease::ConnectionLease;
pub use rate::{Rate, SharedRate};
#[cfg(feature = "shared-limits")]
pub use redis::SharedLimits;
pub use slots::LocalSlots;

use crate::Error;

/// The prefix of every key Outbound writes; `v1` changes when the layout does.
pub const KEY_PREFIX: &str = "outbound:v1";

/// How long a lease lives without renewal, by default: a dead process's slots are free again
/// after at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// How long `MAIL_LIMITS_FAIL=wait` waits for Redis before failing a send, by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// How long a send waits for a shared connection slot at most, before failing with a
/// temporary error (the local pool's own wait has no bound; a cluster-wide one must).
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(300);

/// What happens when Redis is unreachable or slow.
///
/// ```
/// use outbound::limits::FailPolicy;
/// assert_eq!("local".parse::<FailPolicy>()?, FailPolicy::Local);
/// assert_eq!("WAIT".parse::<FailPolicy>()?, FailPolicy::Wait);
/// assert_eq!(FailPolicy::default(), FailPolicy::Local);
/// assert!("retry".parse::<FailPolicy>().is_err());
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailPolicy {
    /// Fall back to this process's own limits (the pool cap, the local rate), warned loudly;
    /// the default, because mail keeps flowing.
    #[default]
    Local,
    /// Wait for Redis (bounded); past the bound a send fails with a temporary error and
    /// sends nothing.
    Wait,
}

impl FromStr for FailPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(FailPolicy::Local),
            "wait" => Ok(FailPolicy::Wait),
            _ => Err(Error::config(format!(
                "`{s}` is not a fallback for the shared limits; expected `local` (per-process \
                 limits while Redis is unreachable) or `wait` (wait for Redis, bounded)"
            ))),
        }
    }
}

impl fmt::Display for FailPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailPolicy::Local => "local",
            FailPolicy::Wait => "wait",
        })
    }
}

/// A connection cap: the SMTP pool takes a lease before opening a connection and keeps it
/// with the connection. Two implementations: [`LocalSlots`], this process's cap (every pool
/// has one, of `pool_size`), and the cap shared with other processes through Redis
/// (`SharedLimits::connection_slots`, feature `shared-limits`), which a pool holds within
/// its own (a connection then holds a slot of each, as one lease).
#[async_trait]
pub trait ConnectionSlots: Send + Sync + fmt::Debug {
    /// A slot if one is free now, without waiting and without a round trip; `None` when every
    /// slot is held, or when the implementation can tell only by asking (Redis): then
    /// [`acquire`](Self::acquire).
    fn try_acquire(&self) -> Option<ConnectionLease> {
        None
    }

    /// Waits for a slot (bounded, for a shared cap). Dropping the lease gives the slot back.
    async fn acquire(&self) -> Result<ConnectionLease, Error>;

    /// E.g. `3 connections shared through redis://127.0.0.1:6379/`.
    fn describe(&self) -> String;
}

/// The id under which an account's limits are kept: the first 32 hex digits of a SHA-256 of
/// its identity parts, so Redis holds no host, user name or secret.
///
/// ```
/// let id = outbound::limits::account_id(&["smtp", "smtp.example.com", "587", "app@example.com"]);
/// assert_eq!(id.len(), 32);
/// assert_ne!(id, outbound::limits::account_id(&["smtp", "smtp.example.com", "587", "other@example.com"]));
/// ```
pub fn account_id(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A limits URL for display: any password replaced by `********`.
///
/// ```
/// use outbound::limits::redact_url;
/// assert_eq!(redact_url("redis://:s3cret@127.0.0.1:6379/0"), "redis://:********@127.0.0.1:6379/0");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// assert_eq!(redact_url("not a url s3cret"), "(not a valid URL)");
/// ```
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail for a URL that already has a password (it has a host).
                let _ = parsed.set_password(Some("********"));
            }
            let shown = parsed.to_string();
            // `Url` adds a `/` to an empty path; keep what the operator wrote.
            if !url.trim().ends_with('/') && parsed.path() == "/" && parsed.query().is_none() {
                shown.trim_end_matches('/').to_string()
            } else {
                shown
            }
        }
        Err(_) => "(not a valid URL)".to_string(),
    }
}

/// The settings of the shared limits, read from the URL's own query (`lease`, `wait`, in
/// seconds) and removed from it before the Redis client sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LimitsUrl {
    /// The URL for the Redis client.
    pub redis: String,
    pub lease: Duration,
    pub wait: Duration,
}

impl LimitsUrl {
    pub(crate) fn parse(url: &str) -> Result<LimitsUrl, Error> {
        let shown = redact_url(url);
        let bad = |why: String| Error::config(format!("the shared limits URL `{shown}` {why}"));
        let mut parsed = url::Url::parse(url.trim()).map_err(|e| {
            bad(format!(
                "is not valid ({e}); expected e.g. redis://127.0.0.1:6379/0"
            ))
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(bad(
                "does not start with redis:// (or rediss:// for TLS)".to_string()
            ));
        }
        let mut lease = DEFAULT_LEASE;
        let mut wait = DEFAULT_WAIT;
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            let seconds = || -> Result<Duration, Error> {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.1 && *s <= 3600.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad(format!("has `{k}={v}`; expected seconds from 0.1 to 3600")))
            };
            match k.as_ref() {
                "lease" => lease = seconds()?,
                "wait" => wait = seconds()?,
                _ => kept.push((k.to_string(), v.to_string())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok(LimitsUrl {
            redis: parsed.to_string(),
            lease,
            wait,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_url_carries_lease_and_wait_and_keeps_the_rest() {
        let u = LimitsUrl::parse("redis://:pw@127.0.0.1:6390/2?lease=3&wait=1.5&protocol=resp3")
            .unwrap();
        assert_eq!(u.redis, "redis://:pw@127.0.0.1:6390/2?protocol=resp3");
        assert_eq!(
            (u.lease, u.wait),
            (Duration::from_secs(3), Duration::from_millis(1500))
        );
        let u = LimitsUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!((u.lease, u.wait), (DEFAULT_LEASE, DEFAULT_WAIT));
        for bad in [
            "http://127.0.0.1",
            "redis://:pw@h?lease=0",
            "redis://h?wait=x",
            "nope",
        ] {
            let err = LimitsUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("pw@"), "{err}");
            assert!(err.contains("shared limits URL"), "{err}");
        }
    }

    #[test]
    fn account_ids_hide_the_identity() {
        let id = account_id(&["smtp", "h", "587", "alice@example.com"]);
        assert!(!id.contains("alice"));
        assert_eq!(id, account_id(&["smtp", "h", "587", "alice@example.com"]));
        // Parts are separated, so shifting a character between them changes the id.
        assert_ne!(account_id(&["ab", "c"]), account_id(&["a", "bc"]));
    }
}
