//! The shared limits' settings: the fallback while Redis is unreachable ([`FailPolicy`]), the
//! limits URL and its own query (`lease`, `wait`), the key layout, and the hashed account ids.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
