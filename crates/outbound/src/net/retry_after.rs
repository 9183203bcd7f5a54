//! The wait an answer asks for: `Retry-After` (delay seconds or an HTTP date, RFC 9110
//! §10.2.3), else `ratelimit-reset`, else `x-ratelimit-reset` (seconds, or a Unix time when the
//! value is that large, as SendGrid sends it). Every wait is capped at one day: a larger value
//! is a server bug and would stall a sender.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The longest wait taken from an answer.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Numbers at least this large are Unix times, not delays.
const UNIX_TIME_FROM: u64 = 1_000_000_000;

/// The wait a response asks for: `Retry-After`, else `ratelimit-reset`, else
/// `x-ratelimit-reset`.
pub(crate) fn wait_from_headers(headers: &HeaderMap) -> Option<Duration> {
    let now = SystemTime::now();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(wait) = get("retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(wait);
    }
    ["ratelimit-reset", "x-ratelimit-reset"]
        .into_iter()
        .find_map(|name| get(name).and_then(|v| parse_rate_limit_reset(v, now)))
        .map(|wait| wait.min(MAX_WAIT))
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, measured from `now`; a date in the past means no wait).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(wait) = parse_seconds(value) {
        return Some(wait);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a rate-limit reset header (`ratelimit-reset`, `x-ratelimit-reset`): seconds until
/// the window resets, or — when the number is at least 1,000,000,000, as SendGrid sends it — a
/// Unix time, measured from `now`.
pub(crate) fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let wait = parse_seconds(value.trim())?;
    if wait.as_secs() >= UNIX_TIME_FROM {
        let at = SystemTime::UNIX_EPOCH + wait;
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    Some(wait)
}

/// Non-negative seconds, whole or decimal; capped at one day, except Unix times (left to the
/// caller).
fn parse_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = value.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs >= UNIX_TIME_FROM as f64 {
        // Unix times are handled by the caller.
        return Some(Duration::from_secs(secs as u64));
    }
    Some(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    /// Was the doc test of the public `outbound::http::parse_retry_after`.
    #[test]
    fn retry_after_examples() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Was the doc test of the public `outbound::http::parse_rate_limit_reset`.
    #[test]
    fn rate_limit_reset_examples() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_rate_limit_reset("2", now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_rate_limit_reset("1700000030", now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means no wait"
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn headers_precedence() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("7"));
        assert_eq!(wait_from_headers(&h), Some(Duration::from_secs(7)));
        h.insert("ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(wait_from_headers(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(wait_from_headers(&h), Some(Duration::from_secs(1)));
        let past = (SystemTime::now() - Duration::from_secs(10))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&past.to_string()).unwrap(),
        );
        assert_eq!(wait_from_headers(&h), Some(Duration::ZERO));
    }

    /// What the token requests used to understand (whole seconds in `Retry-After`) still
    /// works, and so does an HTTP date, which they used to ignore.
    #[test]
    fn token_endpoint_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(wait_from_headers(&h), Some(Duration::from_secs(30)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert("retry-after", HeaderValue::from_str(&soon).unwrap());
        let wait = wait_from_headers(&h).unwrap();
        assert!(
            wait > Duration::from_secs(115) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }
}
