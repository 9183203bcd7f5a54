//! The one error type every transport returns, and the kinds a caller can act on.
//!
//! A sender needs to know one thing first: may I try again? [`ErrorKind`] answers that
//! without string matching. The rest of [`Error`] carries what the server said (SMTP reply
//! code and enhanced status code, or HTTP status and provider error code) so an operator can
//! read the real reason. Nothing secret is ever stored here, so `Display` and `Debug` are
//! safe to log.

use std::fmt;
use std::time::Duration;

use crate::message::MessageError;

/// A boxed error used as the `source()` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, at the level a caller decides on.
///
/// ```
/// use outbound::ErrorKind;
/// assert!(ErrorKind::Transient.is_retryable());
/// assert!(!ErrorKind::Ambiguous.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is missing, contradictory or malformed. Fix it; retrying won't help.
    Config,
    /// The message itself is invalid (no recipient, malformed address, header injection...).
    InvalidMessage,
    /// The server refused the credentials, or the account may not send.
    Auth,
    /// A temporary failure (SMTP 4xx, HTTP 429/5xx) that happened before the message could
    /// have been accepted. Safe to retry.
    Transient,
    /// The server rejected the message for good (SMTP 5xx, HTTP 4xx). Do not retry.
    Permanent,
    /// The message may or may not have been delivered: the connection broke or timed out after
    /// the end of DATA, or after an HTTP body went out without an idempotency key. Retrying
    /// could send it twice; a human or a deduplicating caller must decide.
    Ambiguous,
    /// A phase (connect, TLS, greeting, a command) took longer than allowed, before anything
    /// could have been delivered. Safe to retry.
    Timeout,
    /// TLS could not be set up securely (untrusted certificate, STARTTLS required but absent).
    Tls,
    /// The network failed (connection refused, reset, DNS) before anything could have been
    /// delivered. Safe to retry.
    Network,
}

impl ErrorKind {
    /// Whether an operation that failed with this kind may be retried without risking a
    /// duplicate delivery.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Network
        )
    }

    /// A stable lower-case name, used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::InvalidMessage => "invalid_message",
            ErrorKind::Auth => "auth",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Ambiguous => "ambiguous",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Network => "network",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorKind::Config => "configuration error",
            ErrorKind::InvalidMessage => "invalid message",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Transient => "temporary failure",
            ErrorKind::Permanent => "rejected",
            ErrorKind::Ambiguous => "delivery status unknown",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Network => "network error",
        };
        f.write_str(text)
    }
}

/// The code a server attached to its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCode {
    /// An SMTP reply code (e.g. 535) and its RFC 3463 enhanced status code (e.g. "5.7.8").
    Smtp {
        /// The three-digit reply code.
        code: u16,
        /// The enhanced status code, when the server sent one.
        enhanced: Option<String>,
    },
    /// An HTTP status and the provider's own error code (e.g. "rate_limit_exceeded").
    Http {
        /// The HTTP status code.
        status: u16,
        /// The provider's machine-readable error code, when it sent one.
        provider_code: Option<String>,
    },
}

impl fmt::Display for ServerCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerCode::Smtp { code, enhanced } => match enhanced {
                Some(e) => write!(f, "{code} {e}"),
                None => write!(f, "{code}"),
            },
            ServerCode::Http {
                status,
                provider_code,
            } => match provider_code {
                Some(p) => write!(f, "HTTP {status} {p}"),
                None => write!(f, "HTTP {status}"),
            },
        }
    }
}

/// The error every Outbound operation returns.
///
/// ```
/// use outbound::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::Config, "the transport kind is `smpt`; expected one of: file, memory");
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(!err.is_retryable());
/// assert!(err.to_string().contains("`smpt`"));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    code: Option<ServerCode>,
    server_text: Option<String>,
    retry_after: Option<Duration>,
    setting: Option<&'static str>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a human-readable explanation.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                code: None,
                server_text: None,
                retry_after: None,
                setting: None,
                source: None,
            }),
        }
    }

    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// A [`ErrorKind::Config`] error about the builder setting `name`; the message names it as
    /// `` `name` `` (see [`Error::setting`]).
    pub(crate) fn config_for(name: &'static str, message: impl Into<String>) -> Self {
        Error::config(message).for_setting(name)
    }

    /// Marks this error as being about the builder setting `name` (see [`Error::setting`]);
    /// the message names it as `` `name` ``.
    pub(crate) fn for_setting(mut self, name: &'static str) -> Self {
        self.inner.setting = Some(name);
        self
    }

    /// The builder setting this error is about, when it is about one: `host`, `ca_file`,
    /// `api_key`, `default_from`... Transports name their own settings; the configuration
    /// layer then names the variable, DSN part or map key the value came from instead.
    ///
    /// ```
    /// use outbound::smtp::SmtpTransport;
    /// let err = SmtpTransport::builder("").build().unwrap_err();
    /// assert_eq!(err.setting(), Some("host"));
    /// assert!(err.to_string().contains("`host` is empty"));
    ///
    /// // Built from a map of the seeds' keys, the error names the key that was given.
    /// let err = outbound::create_transport("smtp", [("server", "bad host")]).unwrap_err();
    /// assert!(err.to_string().contains("setting `server` is `bad host`"), "{err}");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn setting(&self) -> Option<&'static str> {
        self.inner.setting
    }

    /// Names settings the way `label` says (a variable, a DSN part, a map key) instead of as
    /// `` `name` ``: every backticked name in the message that `label` knows is replaced, in
    /// one pass (a label may itself contain backticks).
    pub(crate) fn name_settings(mut self, label: impl Fn(&str) -> Option<String>) -> Self {
        if self.inner.setting.is_none() {
            return self;
        }
        let mut out = String::with_capacity(self.inner.message.len());
        let mut parts = self.inner.message.split('`');
        if let Some(first) = parts.next() {
            out.push_str(first);
        }
        let rest: Vec<&str> = parts.collect();
        let mut i = 0;
        while i < rest.len() {
            // rest[i] is inside backticks when a closing one follows.
            if i + 1 < rest.len() {
                match label(rest[i]) {
                    Some(l) => out.push_str(&l),
                    None => {
                        out.push('`');
                        out.push_str(rest[i]);
                        out.push('`');
                    }
                }
                out.push_str(rest[i + 1]);
                i += 2;
            } else {
                out.push('`');
                out.push_str(rest[i]);
                i += 1;
            }
        }
        self.inner.message = out;
        self
    }

    /// Attaches the server's code (SMTP or HTTP).
    pub fn with_code(mut self, code: ServerCode) -> Self {
        self.inner.code = Some(code);
        self
    }

    /// Attaches the server's own words.
    pub fn with_server_text(mut self, text: impl Into<String>) -> Self {
        self.inner.server_text = Some(text.into());
        self
    }

    /// Attaches how long the server asked us to wait before retrying.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.inner.retry_after = Some(wait);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Changes the kind, keeping everything else (used when the phase decides, e.g. a timeout
    /// after the end of DATA becomes [`ErrorKind::Ambiguous`]).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.inner.kind = kind;
        self
    }

    /// Copies `other`'s server code, server text and retry hint onto this error, keeping this
    /// error's kind and message: for an error that explains `other` in its own words.
    pub(crate) fn with_server_details_of(mut self, other: &Error) -> Self {
        if let Some(code) = other.code() {
            self = self.with_code(code.clone());
        }
        if let Some(text) = other.server_text() {
            self = self.with_server_text(text);
        }
        if let Some(wait) = other.retry_after() {
            self = self.with_retry_after(wait);
        }
        self
    }

    /// `other`'s kind, code and server text under a message that puts `context` first
    /// ("context: other's message"), with `other` as the source.
    pub(crate) fn in_context(context: &str, other: Error) -> Self {
        let out = Error::new(other.kind(), format!("{context}: {}", other.message()))
            .with_server_details_of(&other);
        out.with_source(other)
    }

    /// A copy for each of several callers that share one failure (errors are not `Clone`):
    /// kind, message, server details, and the source chain kept as text.
    pub(crate) fn replicate(&self) -> Error {
        let mut out = Error::new(self.kind(), self.message()).with_server_details_of(self);
        out.inner.setting = self.inner.setting;
        if let Some(source) = std::error::Error::source(self) {
            let mut chain = source.to_string();
            let mut next = source.source();
            while let Some(s) = next {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                next = s.source();
            }
            out = out.with_source(SourceText(chain));
        }
        out
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying cannot cause a duplicate delivery.
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_retryable()
    }

    /// The explanation, without the server's text.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The server's code, when a server answered.
    pub fn code(&self) -> Option<&ServerCode> {
        self.inner.code.as_ref()
    }

    /// The SMTP reply code, when this came from an SMTP server.
    pub fn smtp_code(&self) -> Option<u16> {
        match &self.inner.code {
            Some(ServerCode::Smtp { code, .. }) => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, when this came from an HTTP provider.
    pub fn http_status(&self) -> Option<u16> {
        match &self.inner.code {
            Some(ServerCode::Http { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// The server's own text.
    pub fn server_text(&self) -> Option<&str> {
        self.inner.server_text.as_deref()
    }

    /// How long the server asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)?;
        match (&self.inner.code, &self.inner.server_text) {
            (Some(code), Some(text)) => write!(f, " (server said: {code} {text})"),
            (Some(code), None) => write!(f, " (server said: {code})"),
            (None, Some(text)) => write!(f, " (server said: {text})"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(code) = &self.inner.code {
            d.field("code", code);
        }
        if let Some(text) = &self.inner.server_text {
            d.field("server_text", text);
        }
        if let Some(wait) = &self.inner.retry_after {
            d.field("retry_after", wait);
        }
        if let Some(setting) = &self.inner.setting {
            d.field("setting", setting);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<MessageError> for Error {
    fn from(err: MessageError) -> Self {
        let setting = match err {
            // The transport's default sender is the other way to give one.
            MessageError::NoSender => Some("default_from"),
            _ => None,
        };
        let mut out = Error::new(ErrorKind::InvalidMessage, err.to_string()).with_source(err);
        out.inner.setting = setting;
        out
    }
}

/// A source error kept as text (see [`Error::replicate`]).
#[derive(Debug)]
struct SourceText(String);

impl fmt::Display for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceText {}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
