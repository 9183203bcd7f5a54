//! What a failure means: one classification of requests that got no answer, for the HTTP
//! providers and the token requests alike, and the generic kind of an HTTP status.
//!
//! A request that got no answer is classified by whether its body had been handed to the
//! connection ([`body`](super::body)):
//!
//! | what failed | body not yet sent (or connecting) | sent, request idempotent | sent, not idempotent |
//! |---|---|---|---|
//! | TLS | `Tls` | `Tls` | `Tls` |
//! | timeout | `Timeout` | `Timeout` | `Ambiguous` |
//! | connection (refused, reset, DNS) | `Network` | `Transient` | `Ambiguous` |
//!
//! Before the body went out nothing can have been delivered, so the error is safe to retry.
//! After that the server may have acted on the request: a request that cannot deliver twice
//! (one that sends nothing, carries an idempotency key, or only asks for a token) is still safe
//! to retry; any other is [`ErrorKind::Ambiguous`] (the message may or may not have been
//! accepted).

use std::fmt;

use reqwest::Method;

use super::options::HttpOptions;
use super::url::redact_url;
use crate::{Error, ErrorKind};

/// A request that got no answer, as far as its classification needs it.
pub(crate) struct Attempt<'a> {
    /// Who was asked, for messages: `Resend`, `the token endpoint`.
    pub peer: &'a dyn fmt::Display,
    pub method: &'a Method,
    pub url: &'a url::Url,
    /// Whether the body had been handed to the connection.
    pub body_sent: bool,
    /// Whether sending the request twice cannot deliver twice, and why (for the message).
    pub idempotent: Option<&'static str>,
    /// The limits that applied.
    pub options: HttpOptions,
}

/// Classifies a request that got no answer (or whose answer broke off).
pub(crate) fn transport_error(attempt: &Attempt<'_>, err: reqwest::Error) -> Error {
    let p = attempt.peer;
    let options = attempt.options;
    let endpoint = format!("{} {}", attempt.method, redact_url(attempt.url));
    let timed_out = err.is_timeout();
    let cause = error_chain(&err);
    if is_tls_error(&err) {
        return Error::new(
            ErrorKind::Tls,
            format!("TLS with {p} failed for {endpoint}: {cause}"),
        )
        .with_source(err);
    }
    let (kind, message) = if err.is_connect() || !attempt.body_sent {
        // Nothing (complete) reached the server.
        if timed_out {
            let limit = if err.is_connect() {
                options.connect_timeout()
            } else {
                options.timeout()
            };
            (
                ErrorKind::Timeout,
                format!(
                    "{p} did not answer within {} s, before {endpoint} was sent; safe to retry",
                    limit.as_secs_f64()
                ),
            )
        } else {
            (
                ErrorKind::Network,
                format!("could not reach {p} for {endpoint}: {cause}; safe to retry"),
            )
        }
    } else if let Some(why) = attempt.idempotent {
        let (kind, what) = if timed_out {
            (
                ErrorKind::Timeout,
                format!(
                    "did not answer within {} s",
                    options.timeout().as_secs_f64()
                ),
            )
        } else {
            (ErrorKind::Transient, format!("broke off ({cause})"))
        };
        (
            kind,
            format!(
                "{p} {what} after {endpoint} was sent; the request is idempotent ({why}), so \
                 retrying cannot deliver twice"
            ),
        )
    } else {
        let what = if timed_out {
            format!(
                "did not answer within {} s",
                options.timeout().as_secs_f64()
            )
        } else {
            format!("connection broke off ({cause})")
        };
        (
            ErrorKind::Ambiguous,
            format!(
                "{p} {what} after {endpoint} was sent: the message may or may not have been \
                 accepted (delivery status unknown); retrying could send it twice"
            ),
        )
    };
    Error::new(kind, message).with_source(err)
}

/// Whether rustls failed somewhere in the chain.
fn is_tls_error(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The innermost causes, joined (reqwest's own Display is just "error sending request").
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// The generic kind for an HTTP status: 3xx, 404 and 405 say the URL is wrong (`Config`);
/// 401 and 403 refuse the credentials (`Auth`); 408, 429 and 5xx are `Transient`; any other
/// status is `Permanent`. Providers refine it from their error bodies.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        300..=399 => ErrorKind::Config,
        400 | 422 => ErrorKind::Permanent,
        401 | 403 => ErrorKind::Auth,
        404 | 405 => ErrorKind::Config,
        408 | 429 => ErrorKind::Transient,
        413 => ErrorKind::Permanent,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        assert_eq!(kind_for_status(400), ErrorKind::Permanent);
        assert_eq!(kind_for_status(401), ErrorKind::Auth);
        assert_eq!(kind_for_status(403), ErrorKind::Auth);
        assert_eq!(kind_for_status(404), ErrorKind::Config);
        assert_eq!(kind_for_status(413), ErrorKind::Permanent);
        assert_eq!(kind_for_status(422), ErrorKind::Permanent);
        assert_eq!(kind_for_status(429), ErrorKind::Transient);
        assert_eq!(kind_for_status(500), ErrorKind::Transient);
        assert_eq!(kind_for_status(503), ErrorKind::Transient);
        assert_eq!(kind_for_status(302), ErrorKind::Config);
    }
}
