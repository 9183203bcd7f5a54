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

pub mod config;
mod error;
pub mod http;
pub mod message;
mod net;
pub mod oauth;
pub mod smtp;
pub mod transport;

pub use config::{create_transport, from_dsn, from_env, supported_types};
pub use error::{BoxError, Error, ErrorKind, Result, ServerCode};
pub use http::{GraphTransport, ResendTransport, SendGridTransport};
pub use message::{Attachment, Envelope, Mailbox, Message, MessageBuilder, MessageError};
pub use oauth::{AccessToken, TokenCache, TokenSource};
pub use smtp::SmtpTransport;
pub use transport::{Receipt, RejectedRecipient, Transport};

/// The README's Rust examples are compiled as doc tests, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
