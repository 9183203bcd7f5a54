//! Transports that send through a provider's HTTP API — [Resend](ResendTransport),
//! [SendGrid](SendGridTransport) and [Microsoft Graph](GraphTransport) — and the layer they
//! share.
//!
//! The shared layer is one [`reqwest`] client per transport (so connections are reused, with
//! HTTP/2 where the server offers it over TLS), rustls with the system's root certificates,
//! connect and total timeouts ([`HttpOptions`]), a `User-Agent` of [`USER_AGENT`], no redirects
//! (a redirected API call is a wrong base URL, reported as a config error), and one mapping from
//! a provider's answer to an [`Error`]:
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
//! request carried an idempotency key (Resend), in which case a retry cannot send twice and the
//! error is `Timeout` (or `Transient` for a broken connection).
//!
//! The wait comes from `Retry-After` (seconds or an HTTP date), else `ratelimit-reset` (seconds),
//! else `x-ratelimit-reset` (seconds, or a Unix time when the value is that large, as SendGrid
//! sends it); see [`parse_retry_after`] and [`parse_rate_limit_reset`].
//!
//! API keys and tokens are kept in [`SecretString`]s; they appear in no `Display`, `Debug`, log
//! line or error (provider texts are scrubbed of them too).

mod api_key;
pub(crate) mod graph;
pub(crate) mod resend;
pub(crate) mod sendgrid;

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::{Error, ErrorKind, Mailbox, ServerCode};

/// The `User-Agent` every HTTP transport sends: `outbound/<version>`.
///
/// ```
/// assert!(outbound::http::USER_AGENT.starts_with("outbound/"));
/// ```
pub const USER_AGENT: &str = concat!("outbound/", env!("CARGO_PKG_VERSION"));

/// Largest provider answer read into memory; anything longer is cut (answers are small JSON).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Longest provider text kept in an error.
const MAX_SERVER_TEXT: usize = 1000;

/// Timeouts of an HTTP transport.
///
/// ```
/// use std::time::Duration;
/// use outbound::http::HttpOptions;
/// let o = HttpOptions::default().with_timeout(Duration::from_secs(10));
/// assert_eq!(o.timeout(), Duration::from_secs(10));
/// assert_eq!(o.connect_timeout(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    connect_timeout: Duration,
    timeout: Duration,
}

impl Default for HttpOptions {
    /// Connect within 10 s; the whole request (connect, send, answer) within 30 s.
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl HttpOptions {
    /// Time allowed to open the connection (TCP and TLS).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole request, from connecting to reading the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The total timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, measured from `now`; a date in the past means no wait).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use outbound::http::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
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
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use outbound::http::parse_rate_limit_reset;
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(parse_rate_limit_reset("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_rate_limit_reset("1700000030", now), Some(Duration::from_secs(30)));
/// ```
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let wait = parse_seconds(value.trim())?;
    if wait.as_secs() >= 1_000_000_000 {
        let at = SystemTime::UNIX_EPOCH + wait;
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    Some(wait)
}

/// Non-negative seconds, whole or decimal; capped at one day (a larger value is a server bug
/// and would stall a sender).
fn parse_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = value.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs >= 1_000_000_000.0 {
        // Unix times are handled by the caller.
        return Some(Duration::from_secs(secs as u64));
    }
    Some(Duration::from_secs_f64(secs.min(86_400.0)))
}

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
        .map(|wait| wait.min(Duration::from_secs(86_400)))
}

/// Names a provider in messages, with the variables an operator would fix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Provider {
    /// For humans: `Resend`, `SendGrid`, `Microsoft Graph`.
    pub name: &'static str,
    /// Where the credentials come from, e.g. `RESEND_API_KEY`.
    pub credentials_hint: &'static str,
    /// Where the base URL comes from, e.g. `RESEND_API_URL`.
    pub url_hint: &'static str,
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

/// A request to send.
pub(crate) struct Request {
    pub method: Method,
    pub url: url::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body bytes and content type.
    pub body: Option<(Bytes, &'static str)>,
    /// Whether sending the request twice cannot deliver twice (GET, or an idempotency key).
    pub idempotent: bool,
}

impl Request {
    pub(crate) fn get(url: url::Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            idempotent: true,
        }
    }

    pub(crate) fn post(url: url::Url, body: Bytes, content_type: &'static str) -> Self {
        Request {
            method: Method::POST,
            url,
            headers: Vec::new(),
            body: Some((body, content_type)),
            idempotent: false,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `Authorization: Bearer <secret>`, marked sensitive so it is never logged by the stack.
    pub(crate) fn bearer(self, secret: &SecretString) -> Result<Self, Error> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
            .map_err(|_| {
                Error::config(
                    "the API key or token contains characters not allowed in an HTTP header \
                     (spaces, line breaks or non-ASCII)",
                )
            })?;
        value.set_sensitive(true);
        Ok(self.header(reqwest::header::AUTHORIZATION, value))
    }
}

/// A provider's answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One reqwest client, reused for every request of a transport.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    options: HttpOptions,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.options)
            .finish()
    }
}

/// The system roots, offering HTTP/2 and HTTP/1.1 by ALPN.
fn tls_config() -> rustls::ClientConfig {
    crate::net::https_config(&[b"h2", b"http/1.1"])
}

impl HttpClient {
    pub(crate) fn new(options: HttpOptions) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .user_agent(USER_AGENT)
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                Error::config(format!("could not set up the HTTP client: {e}")).with_source(e)
            })?;
        Ok(HttpClient { client, options })
    }

    /// Sends a request and reads the whole answer (whatever its status). Fails only when no
    /// answer came; see the module docs for how that failure is classified.
    pub(crate) async fn send(&self, provider: &Provider, req: Request) -> Result<Response, Error> {
        let started = Instant::now();
        let sent = Arc::new(AtomicBool::new(false));
        let method = req.method.clone();
        let url = req.url.clone();
        let mut builder = self.client.request(req.method, req.url);
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        if let Some((body, content_type)) = req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(reqwest::Body::wrap(TrackedBody {
                    data: Some(body),
                    sent: sent.clone(),
                }));
        } else {
            // Nothing to deliver: a GET is "sent" as soon as it could be processed.
            sent.store(true, Ordering::SeqCst);
        }
        tracing::debug!(provider = provider.name, %method, %url, "HTTP request");
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = transport_error(
                    provider,
                    &method,
                    &url,
                    e,
                    sent.load(Ordering::SeqCst),
                    req.idempotent,
                    self.options,
                );
                tracing::debug!(provider = provider.name, %method, %url, error = %err,
                    elapsed_ms = started.elapsed().as_millis() as u64, "HTTP request failed");
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_body(response).await;
        tracing::debug!(provider = provider.name, %method, %url, status,
            elapsed_ms = started.elapsed().as_millis() as u64, "HTTP response");
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`]; a body that breaks off keeps what arrived (the status
/// already tells the outcome).
async fn read_body(mut response: reqwest::Response) -> Bytes {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() >= MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "the response body broke off");
                break;
            }
        }
    }
    Bytes::from(buf)
}

/// A request body that records when the connection took it: before that the provider cannot
/// have the whole request, so a failure is safe to retry.
struct TrackedBody {
    data: Option<Bytes>,
    sent: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.data.take() {
            Some(data) => {
                self.sent.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Classifies a request that got no answer.
fn transport_error(
    provider: &Provider,
    method: &Method,
    url: &url::Url,
    err: reqwest::Error,
    body_sent: bool,
    idempotent: bool,
    options: HttpOptions,
) -> Error {
    let p = provider.name;
    let endpoint = format!("{method} {}", redact_url(url));
    let timed_out = err.is_timeout();
    let cause = error_chain(&err);
    if is_tls_error(&err) {
        return Error::new(
            ErrorKind::Tls,
            format!("TLS with {p} failed for {endpoint}: {cause}"),
        )
        .with_source(err);
    }
    let err_kind_msg = if err.is_connect() || !body_sent {
        // Nothing (complete) reached the provider.
        if timed_out {
            let limit = if err.is_connect() {
                options.connect_timeout
            } else {
                options.timeout
            };
            (
                ErrorKind::Timeout,
                format!(
                    "{p} did not answer {endpoint} within {} s, before the request was sent; \
                     safe to retry",
                    limit.as_secs_f64()
                ),
            )
        } else {
            (
                ErrorKind::Network,
                format!("could not reach {p} for {endpoint}: {cause}; safe to retry"),
            )
        }
    } else if idempotent {
        let kind = if timed_out {
            ErrorKind::Timeout
        } else {
            ErrorKind::Transient
        };
        let what = if timed_out {
            format!("timed out after {} s", options.timeout.as_secs_f64())
        } else {
            format!("broke off ({cause})")
        };
        (
            kind,
            format!(
                "{p} {what} after {endpoint} was sent; the request is idempotent (it carries an \
                 idempotency key or sends nothing), so retrying cannot deliver twice"
            ),
        )
    } else {
        let what = if timed_out {
            format!("did not answer within {} s", options.timeout.as_secs_f64())
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
    Error::new(err_kind_msg.0, err_kind_msg.1).with_source(err)
}

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

/// The URL without user info or query (neither is used for secrets here, but be safe).
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// The generic kind for an HTTP status (see the table in the module docs).
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
    let kind = parsed.kind.unwrap_or_else(|| kind_for_status(status));
    let wait = wait_from_headers(&response.headers);
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
    let text = parsed
        .text
        .or_else(|| body_snippet(&response.body))
        .map(|t| scrub(&one_line(&t), secrets));
    let mut err = Error::new(kind, message).with_code(ServerCode::Http {
        status,
        provider_code: parsed.code.map(|c| scrub(&one_line(&c), secrets)),
    });
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        err = err.with_server_text(text);
    }
    if let Some(wait) = wait {
        if kind.is_retryable() {
            err = err.with_retry_after(wait);
        }
    }
    err
}

/// The start of a body that is not the provider's JSON (a proxy's HTML page...).
fn body_snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        None
    } else if text.starts_with('<') {
        Some(format!(
            "(HTML page) {}",
            text.chars().take(200).collect::<String>()
        ))
    } else {
        Some(text.chars().take(400).collect())
    }
}

/// One line, at most [`MAX_SERVER_TEXT`] characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > MAX_SERVER_TEXT {
        let mut cut: String = joined.chars().take(MAX_SERVER_TEXT).collect();
        cut.push('…');
        cut
    } else {
        joined
    }
}

/// Removes any secret a provider echoed back.
fn scrub(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let s = secret.expose_secret();
        if s.len() >= 4 && out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

/// A base URL: `http(s)://host[:port][/path]`; plain http only to a loopback host (the key
/// would otherwise cross the network in clear text).
pub(crate) fn parse_base_url(raw: &str, origin: &str) -> Result<url::Url, Error> {
    let url = crate::net::parse_endpoint_url(raw, origin)?;
    if url.query().is_some() {
        return Err(Error::config(format!(
            "{origin} is `{}`: a base URL has no query",
            raw.trim()
        )));
    }
    Ok(url)
}

/// `base` + `path` (`/emails`), keeping a path prefix the base URL has.
pub(crate) fn endpoint(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
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
        return Err(Error::config(format!("{origin} is empty")));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::config(format!(
            "{origin} contains spaces, line breaks or non-ASCII characters; an API key is one \
             word of printable ASCII (check for a stray newline or quotes)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn base_urls() {
        assert!(parse_base_url("https://api.resend.com", "X").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8025", "X").is_ok());
        assert!(parse_base_url("http://[::1]:8025", "X").is_ok());
        assert!(parse_base_url("http://localhost:1", "X").is_ok());
        let err = parse_base_url("http://api.resend.com", "RESEND_API_URL").unwrap_err();
        assert!(err.to_string().contains("RESEND_API_URL"), "{err}");
        assert!(parse_base_url("ftp://x", "X").is_err());
        assert!(parse_base_url("https://u:p@x", "X").is_err());
        let base = parse_base_url("https://proxy.example/resend/", "X").unwrap();
        assert_eq!(
            endpoint(&base, "/emails").as_str(),
            "https://proxy.example/resend/emails"
        );
        let base = parse_base_url("https://api.resend.com", "X").unwrap();
        assert_eq!(
            endpoint(&base, "/emails").as_str(),
            "https://api.resend.com/emails"
        );
    }

    #[test]
    fn offers_http2_by_alpn() {
        let config = tls_config();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(HttpClient::new(HttpOptions::default()).is_ok());
    }

    #[test]
    fn scrubs_secrets() {
        let key = SecretString::from("re_123456789");
        assert_eq!(
            scrub("bad key re_123456789 given", &[&key]),
            "bad key [redacted] given"
        );
    }
}
