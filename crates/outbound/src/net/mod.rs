//! The network layer every client in Outbound shares.
//!
//! SMTP, the HTTP providers (Resend, SendGrid, Microsoft Graph) and the OAuth2 token requests
//! all talk to servers that hold or receive secrets. They verify those servers against the same
//! roots, refuse the same unsafe URLs, classify the same failures the same way and scrub the
//! same secrets from what servers say, so each of those rules lives here once:
//!
//! - [`tls`]: the system's trusted roots (loaded once per process), the crypto provider, and
//!   the HTTPS client configuration.
//! - [`url`]: which endpoint URLs may carry secrets (`https`, or `http` to loopback only), base
//!   URLs and joining paths onto them, and URLs as they may be shown.
//! - [`options`]: the timeouts of an HTTP transport ([`HttpOptions`]).
//! - [`client`]: the one reqwest client setup (timeouts, `User-Agent`, HTTP/2 by ALPN, rustls
//!   with our roots, no redirects), the request and answer types, and `send`.
//! - [`body`]: the request body that records when the connection took it.
//! - [`classify`]: what a failure without an answer means (`Network`, `Timeout`, `Tls`,
//!   `Transient` or `Ambiguous`, depending on whether the body went out and whether the request
//!   may be repeated), and the generic kind of an HTTP status.
//! - [`retry_after`]: the wait an answer asks for (`Retry-After` in seconds or as an HTTP date,
//!   then the rate-limit reset headers).
//! - [`redact`]: the one redactor applied to any server text before it goes into an error or a
//!   log (configured secrets and their common encodings, JWT-shaped strings, bearer tokens).
//! - [`text`]: server text folded to one bounded line, and a short snippet of a body.
//!
//! What is specific to a provider (Resend, SendGrid and Graph error bodies, Microsoft's AADSTS
//! codes) stays with that provider.

// Everything but the trusted roots is the HTTP client's (feature `http-client`); SMTP needs
// only the roots.
#[cfg(feature = "http-client")]
mod body;
#[cfg(feature = "http-client")]
mod classify;
#[cfg(feature = "http-client")]
mod client;
#[cfg(feature = "http-client")]
mod options;
mod redact;
#[cfg(feature = "http-client")]
mod retry_after;
mod text;
mod tls;
#[cfg(feature = "http-client")]
mod url;

#[cfg(feature = "http-client")]
pub(crate) use self::url::{endpoint, is_loopback, parse_base_url, parse_endpoint_url, redact_url};
#[cfg(feature = "http-client")]
pub(crate) use classify::kind_for_status;
#[cfg(feature = "http-client")]
pub(crate) use client::{Client, Request, Response, Setup, MAX_RESPONSE_BYTES};
#[cfg(feature = "http-client")]
pub use options::HttpOptions;
pub(crate) use redact::Redactor;
#[cfg(feature = "http-client")]
pub(crate) use retry_after::wait_from_headers;
pub(crate) use text::{body_snippet, MAX_SERVER_TEXT};
pub(crate) use tls::{crypto_provider, system_roots};
