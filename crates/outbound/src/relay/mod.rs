//! The receiving side of `outbound relay` (feature `relay`): an SMTP submission server (RFC
//! 5321, RFC 6409) for programs that only speak password SMTP. It accepts mail from local
//! users (AUTH PLAIN and LOGIN against an Argon2id users file), allowed networks, or loopback
//! clients, and hands each message to a [`Spool`].
//!
//! # What exists
//!
//! - [`RelayServer`]: listeners (loopback by default; STARTTLS when a certificate is set; an
//!   implicit-TLS listener on request), the connection count, the drain on shutdown.
//!   `listener.rs`, `server.rs`, `tls.rs`.
//! - The session (`session/`), one file per phase: the greeting and EHLO/HELO with
//!   PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, STARTTLS and AUTH
//!   PLAIN LOGIN; MAIL/RCPT; the message through DATA or BDAT. Commands are parsed by
//!   smtp-proto's request parser; every reply, with its RFC 3463 code, is in [`Reply`].
//! - Never an open relay ([`AccessPolicy`], [`check_listener`]): who may relay, AUTH only
//!   after TLS except on loopback, a non-loopback listener without users or allowed networks
//!   refusing to start.
//! - Failed AUTH slowed and locked out per address, the size, recipient, connection, line and
//!   time limits ([`Limits`], [`AuthLimits`]).
//! - No SMTP smuggling (`data.rs`): only CRLF.CRLF ends DATA; a bare CR or LF anywhere in a
//!   message refuses it with `550 5.6.0`.
//! - The users file ([`add_user`], [`remove_user`], [`list_users`]; [`SenderPattern`]s
//!   restrict a user's envelope sender and `From:`/`Sender:`).
//! - The seam to the spool ([`Spool`], [`SpoolWriter`], [`Envelope`], [`MessageFacts`]): the
//!   message is streamed to it a chunk at a time; `250` only after its `commit` returned `Ok`.
//!   `Received:`, and `Message-ID:`/`Date:` when missing (RFC 6409 section 8), are added on
//!   the way (`headers.rs`).
//!
//! # What is to come
//!
//! - The durable spool (an implementation of [`Spool`] on the journal's durable store:
//!   `fsync` of data and directory, or SQLite with full sync) and `direct` mode (a [`Spool`]
//!   that forwards within DATA and answers with the upstream's verdict through
//!   [`SpoolError::Refused`]).
//! - The delivery workers (retry with backoff up to the queue's maximum age, DSNs, the
//!   ambiguous-outcome policy), `outbound relay serve|users|status|queue|retry|delete` in the
//!   CLI (which maps the configuration errors here to exit 78), metrics.
//!
//! ```
//! use std::sync::Arc;
//! use outbound::relay::{Envelope, MessageFacts, QueueId, RelayServer, Spool, SpoolError, SpoolWriter};
//!
//! /// A spool that keeps nothing (a real one makes the message durable in `commit`).
//! struct Discard;
//! struct DiscardWriter(QueueId);
//!
//! #[async_trait::async_trait]
//! impl Spool for Discard {
//!     async fn open(&self, _: &Envelope) -> Result<Box<dyn SpoolWriter>, SpoolError> {
//!         Ok(Box::new(DiscardWriter(QueueId::new("Q1"))))
//!     }
//! }
//!
//! #[async_trait::async_trait]
//! impl SpoolWriter for DiscardWriter {
//!     fn id(&self) -> &QueueId { &self.0 }
//!     async fn write(&mut self, _chunk: &[u8]) -> Result<(), SpoolError> { Ok(()) }
//!     async fn commit(self: Box<Self>, _: &MessageFacts) -> Result<QueueId, SpoolError> { Ok(self.0) }
//!     async fn abort(self: Box<Self>) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), outbound::Error> {
//! let relay = RelayServer::builder(Arc::new(Discard))
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .bind()
//!     .await?;
//! let addr = relay.plain_addrs()[0];
//! let running = relay.spawn();
//! // ... clients submit to `addr` ...
//! # let _ = addr;
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod access;
mod context;
mod data;
mod headers;
mod limits;
mod listener;
mod reply;
mod server;
mod session;
mod spool;
mod tls;
mod users;

pub use access::{check_listener, AccessPolicy};
pub use limits::{AuthLimits, Limits};
pub use reply::Reply;
pub use server::{RelayBuilder, RelayHandle, RelayServer, DEFAULT_LISTEN};
pub use spool::{Envelope, MessageFacts, QueueId, Spool, SpoolError, SpoolWriter};
pub use users::{
    add_user, list_users, remove_user, Added, AuthenticatedUser, SenderPattern, UserSummary,
    UsersError,
};
