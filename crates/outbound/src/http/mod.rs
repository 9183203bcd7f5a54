//! Transports that send through a provider's HTTP API — [Resend](ResendTransport),
//! [SendGrid](SendGridTransport) and [Microsoft Graph](GraphTransport) — and the layer they
//! share.
//!
//! The shared layer is the crate's one network layer (one [`reqwest`] client per transport, so
//! connections are reused, with HTTP/2 where the server offers it over TLS; rustls with the
//! system's root certificates; connect and total timeouts ([`HttpOptions`]); a `User-Agent` of
//! `outbound/<version>`; no redirects, a redirected API call being a wrong base URL, reported as
//! a config error), and one mapping from a provider's answer to an [`Error`]:
//!
//! | answer | kind | why |
//! |---|---|---|
//! | 3xx | `Config` | the base URL points somewhere else; fix it |
//! | 400, 422 | `Permanent`, or `InvalidMessage` when the provider says a field of the message is wrong | retrying the same request gives the same answer |
//! | 401, 403 | `Auth` | key or token refused, or not allowed to send (a quota answered as 401 is `Permanent`) |
//! | 404, 405 | `Config` | wrong base URL, or (Graph) a sender mailbox that does not exist |
//! | 408 | `Transient` | the server gave up waiting for the request, so it did not process it |
//! | 409 | per provider (Resend: a concurrent request with the same idempotency key is `Transient`) | |
//! | 413 | `Permanent` | too large |
//! | 429 | `Transient` with [`Error::retry_after`]; a daily or monthly quota is `Permanent` | |
//! | 5xx | `Transient` (with `retry_after` when the server sent one) | |
//!
//! Failures without an answer are classified by whether the request body had been handed to
//! the connection: before that (connection refused, DNS, TLS, connect timeout) nothing can have
//! been delivered, so the error is `Network` or `Timeout` and safe to retry. After that the
//! provider may have accepted the message, so the error is [`ErrorKind::Ambiguous`] — unless the
//! request carried an idempotency key (Resend) or sends nothing (a GET), in which case a retry
//! cannot send twice and the error is `Timeout` (or `Transient` for a broken connection). Token
//! requests are classified by the same rule.
//!
//! The wait comes from `Retry-After` (seconds or an HTTP date), else `ratelimit-reset` (seconds),
//! else `x-ratelimit-reset` (seconds, or a Unix time when the value is that large, as SendGrid
//! sends it), at most one day.
//!
//! API keys and tokens are kept in [`SecretString`]s; they appear in no `Display`, `Debug`, log
//! line or error (provider texts are scrubbed of them too).

#[cfg(any(feature = "resend", feature = "sendgrid"))]
mod api_key;
#[cfg(feature = "graph")]
pub(crate) mod graph;
#[cfg(feature = "resend")]
pub(crate) mod resend;
#[cfg(feature = "sendgrid")]
pub(crate) mod sendgrid;

use std::fmt;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::net::{self, Redactor};
use crate::{Error, ErrorKind, Mailbox, ServerCode};

pub use crate::net::HttpOptions;
pub(crate) use crate::net::{
    endpoint, parse_base_url, redact_url, Client as HttpClient, Request, Response,
};

/// Names a provider in messages, with the variables an operator would fix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Provider {
    /// For humans: `Resend`, `SendGrid`, `Microsoft Graph`.
    pub name: &'static str,
    /// The builder settings that hold the credentials, e.g. `` `api_key` `` (configuration
    /// names their sources instead).
    pub credentials_hint: &'static str,
    /// The builder setting of the base URL, `` `base_url` ``.
    pub url_hint: &'static str,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What a provider's error body said, and how the provider wants it classified.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProviderError {
    /// The machine-readable code (`rate_limit_exceeded`, `ErrorSendAsDenied`...).
    pub code: Option<String>,
    /// The provider's words.
    pub text: Option<String>,
    /// A kind decided by the provider's rules, overriding the status table.
    pub kind: Option<ErrorKind>,
    /// A message replacing the generic one.
    pub message: Option<String>,
}

/// Builds the error for a non-2xx answer.
pub(crate) fn status_error(
    provider: &Provider,
    method: &Method,
    url: &url::Url,
    response: &Response,
    parsed: ProviderError,
    secrets: &[&SecretString],
) -> Error {
    let p = provider.name;
    let status = response.status;
    let kind = parsed.kind.unwrap_or_else(|| net::kind_for_status(status));
    let wait = net::wait_from_headers(&response.headers);
    let endpoint = format!("{method} {}", redact_url(url));
    let message = parsed.message.unwrap_or_else(|| match (kind, status) {
        (ErrorKind::Config, 300..=399) => {
            let location = response
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("elsewhere");
            format!(
                "{p} redirected {endpoint} to {location}: set {} to the API's real base URL \
                 (API calls do not follow redirects)",
                provider.url_hint
            )
        }
        (ErrorKind::Config, _) => format!(
            "{p} answered HTTP {status} for {endpoint}: the API base URL looks wrong (check {})",
            provider.url_hint
        ),
        (ErrorKind::Auth, _) => format!(
            "{p} refused the credentials or the permission to send (HTTP {status}): check {}",
            provider.credentials_hint
        ),
        (ErrorKind::Transient, 429) => match wait {
            Some(w) => format!(
                "{p} rate limit reached (HTTP 429); retry after {} s",
                w.as_secs_f64()
            ),
            None => format!("{p} rate limit reached (HTTP 429); retry later"),
        },
        (ErrorKind::Transient, _) => format!(
            "{p} had a temporary failure (HTTP {status}); the request can be retried{}",
            wait.map(|w| format!(" after {} s", w.as_secs_f64()))
                .unwrap_or_default()
        ),
        (ErrorKind::Permanent, 413) => {
            format!("{p} refused the request as too large (HTTP 413); do not retry")
        }
        (ErrorKind::InvalidMessage, _) => {
            format!("{p} rejected the message as invalid (HTTP {status}); do not retry")
        }
        _ => format!("{p} rejected the request (HTTP {status}); do not retry"),
    });
    let redact = Redactor::new(secrets.iter().copied());
    let text = parsed
        .text
        .or_else(|| net::body_snippet(&response.body))
        .map(|t| redact.server_text(&t, net::MAX_SERVER_TEXT));
    let mut err = Error::new(kind, message).with_code(ServerCode::Http {
        status,
        provider_code: parsed
            .code
            .map(|c| redact.server_text(&c, net::MAX_SERVER_TEXT)),
    });
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        err = err.with_server_text(text);
    }
    match kind {
        // These name the settings to check; configuration names their sources.
        ErrorKind::Config => err = err.for_setting("base_url"),
        ErrorKind::Auth => err = err.for_setting("api_key"),
        _ => {}
    }
    if let Some(wait) = wait {
        if kind.is_retryable() {
            err = err.with_retry_after(wait);
        }
    }
    err
}

/// A mailbox for an API: the display name as given, the domain in punycode.
pub(crate) fn api_mailbox(m: &Mailbox) -> (Option<String>, String) {
    (m.name().map(str::to_string), m.ascii_email())
}

/// `Name <addr>` (RFC 5322 display form) with the domain in punycode.
pub(crate) fn mailbox_string(m: &Mailbox) -> String {
    match Mailbox::new(m.name(), &m.ascii_email()) {
        Ok(ascii) => ascii.to_string(),
        Err(_) => m.to_string(),
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks an API key's characters without revealing it.
pub(crate) fn check_header_secret(secret: &SecretString, origin: &str) -> Result<(), Error> {
    let s = secret.expose_secret();
    if s.trim().is_empty() {
        return Err(Error::config(format!("{origin} is empty")).for_setting("api_key"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::config(format!(
            "{origin} contains spaces, line breaks or non-ASCII characters; an API key is one \
             word of printable ASCII (check for a stray newline or quotes)"
        ))
        .for_setting("api_key"));
    }
    Ok(())
}
