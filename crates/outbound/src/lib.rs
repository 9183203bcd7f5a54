//! Outbound sends transactional email through one interface: SMTP (password or OAuth2),
//! Microsoft Graph, Resend or SendGrid, plus `file` and `memory` transports for development
//! and tests.
//!
//! ```
//! use outbound::{Message, Transport};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), outbound::Error> {
//! let transport = outbound::create_transport("memory", [("default_from", "app@example.com")])?;
//! let msg = Message::builder()
//!     .to("ada@example.com")
//!     .subject("Welcome")
//!     .html("<h1>Hello!</h1>")
//!     .build()?;
//! let receipt = transport.send(&msg).await?;
//! assert_eq!(receipt.accepted, ["ada@example.com"]);
//! # Ok(()) }
//! ```

// A build with only some transports (see the features in Cargo.toml) leaves parts of the shared
// code unused; the default build, with everything, is linted strictly.
#![cfg_attr(
    not(all(
        feature = "smtp",
        feature = "resend",
        feature = "sendgrid",
        feature = "graph",
        feature = "oauth"
    )),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "bulk")]
pub mod bulk;
pub mod config;
pub mod dev;
mod error;
#[cfg(any(feature = "resend", feature = "sendgrid", feature = "graph"))]
mod http;
pub mod limits;
pub mod message;
#[cfg(any(feature = "smtp", feature = "http-client"))]
mod net;
pub mod oauth;
#[cfg(feature = "relay")]
pub mod relay;
#[cfg(feature = "smtp")]
pub mod smtp;
mod transport;

#[cfg(feature = "resend")]
/// Sending through [Resend](https://resend.com)'s HTTP API (`POST /emails` with an
/// Idempotency-Key, so a retry never sends twice).
pub mod resend {
    pub use crate::http::resend::{ResendBuilder, ResendTransport, MAX_RESEND_TO};
    pub use crate::http::HttpOptions;
}

#[cfg(feature = "sendgrid")]
/// Sending through SendGrid's v3 HTTP API (`POST /v3/mail/send`).
pub mod sendgrid {
    pub use crate::http::sendgrid::{SendGridBuilder, SendGridTransport, MAX_SENDGRID_RECIPIENTS};
    pub use crate::http::HttpOptions;
}

#[cfg(feature = "graph")]
/// Sending through Microsoft Graph (`POST /v1.0/users/{mailbox}/sendMail`) with an app-only
/// OAuth2 token.
pub mod graph {
    pub use crate::http::graph::{
        GraphBuilder, GraphTransport, MAX_GRAPH_HEADERS, MAX_GRAPH_REQUEST_BYTES,
    };
    pub use crate::http::HttpOptions;
}

pub use transport::layer;

pub use config::{create_transport, from_dsn, from_env, supported_types};
pub use error::{Error, ErrorKind, Result, ServerCode};
pub use message::{Attachment, Mailbox, Message, MessageBuilder, MessageError};
pub use transport::layer::TransportExt;
pub use transport::{Receipt, RejectedRecipient, Transport};

/// The README's Rust examples are compiled as doc tests, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
