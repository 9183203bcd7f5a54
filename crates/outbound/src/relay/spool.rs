//! The seam between the SMTP server and whatever keeps an accepted message: the durable spool
//! (and, in `direct` mode, the upstream itself).
//!
//! At DATA (or the first BDAT) the session calls [`Spool::open`] with the [`Envelope`]; the
//! writer it gets takes the message a chunk at a time as it arrives (the relay never holds a
//! whole message), then [`SpoolWriter::commit`] with the [`MessageFacts`] learned on the
//! way. The session answers `250` only when `commit` returned `Ok`, which must mean the
//! envelope and every byte are durable. Any error is answered with a `4xx` (or, for
//! [`SpoolError::Refused`], the reply it carries), never `250`. A message the relay refuses
//! itself (too big, bare CR or LF, a sender the user may not use) is given to
//! [`SpoolWriter::abort`] instead.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use async_trait::async_trait;

use super::reply::Reply;
use super::users::AuthenticatedUser;

/// Who sent a message and to whom, as the SMTP session learned it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The envelope sender (`MAIL FROM`), without angle brackets; empty for the null sender.
    pub mail_from: String,
    /// The accepted recipients (`RCPT TO`), in order, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The user who authenticated, if any.
    pub user: Option<AuthenticatedUser>,
    /// The client's address.
    pub client: SocketAddr,
    /// The name the client gave in EHLO or HELO.
    pub helo: String,
    /// Whether the session was encrypted (STARTTLS or the implicit-TLS listener).
    pub tls: bool,
    /// `SMTPUTF8` was given with MAIL (RFC 6531): addresses or headers may be UTF-8.
    pub smtputf8: bool,
    /// `BODY=8BITMIME` was given with MAIL (RFC 6152).
    pub eight_bit: bool,
    /// When the transaction's DATA or first BDAT came.
    pub received_at: SystemTime,
}

/// An id the spool gives a message, shown to the client in `250 … queued as ID` and in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueId(String);

impl QueueId {
    /// An id made of `id`'s printable ASCII characters (anything else becomes `_`), so that
    /// it can go in a reply and a `Received:` field as is.
    pub fn new(id: impl Into<String>) -> Self {
        let id: String = id
            .into()
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        QueueId(id)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the relay learned while the message went through: given to
/// [`SpoolWriter::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    /// The message's `Message-ID` with angle brackets: the client's, or the one the relay
    /// added (RFC 6409 section 8.3).
    pub message_id: String,
    /// Whether the relay added the `Message-ID`.
    pub added_message_id: bool,
    /// Whether the relay added the `Date` (RFC 6409 section 8.2).
    pub added_date: bool,
    /// The octets written to the writer (the client's message with the fields the relay
    /// added).
    pub size: u64,
}

/// Why a message could not be kept. The session answers each with a temporary failure (the
/// client keeps the message and tries again), except [`SpoolError::Refused`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// No room (disk full, quota): `452 4.3.1`.
    #[error("no room to store the message: {0}")]
    Full(String),
    /// Could not be made durable for another reason (I/O error, read-only): `451 4.3.0`.
    #[error("could not store the message: {0}")]
    Unavailable(String),
    /// A verdict to give as is, e.g. the upstream's in `direct` mode. A positive or
    /// intermediate code here is answered `451 4.3.0` instead: only a successful `commit`
    /// is answered `250`.
    #[error("refused: {0:?}")]
    Refused(Reply),
}

impl SpoolError {
    /// What the session answers.
    pub fn reply(&self) -> Reply {
        match self {
            SpoolError::Full(_) => Reply::storage_full(),
            SpoolError::Unavailable(_) => Reply::not_stored(),
            SpoolError::Refused(reply) if reply.code() >= 400 => reply.clone(),
            SpoolError::Refused(_) => Reply::not_stored(),
        }
    }
}

/// Where accepted messages go. Implemented by the durable spool (and by test doubles).
///
/// ```
/// use outbound::relay::{Envelope, MessageFacts, QueueId, Spool, SpoolError, SpoolWriter};
///
/// /// Keeps nothing: every message is refused as "not stored" (a 451 for the client).
/// struct Nowhere;
///
/// #[async_trait::async_trait]
/// impl Spool for Nowhere {
///     async fn open(&self, _envelope: &Envelope) -> Result<Box<dyn SpoolWriter>, SpoolError> {
///         Err(SpoolError::Unavailable("nowhere to put it".into()))
///     }
/// }
/// ```
#[async_trait]
pub trait Spool: Send + Sync + 'static {
    /// Starts a message with this envelope. An error is answered before the client sends
    /// the message (DATA) or in place of the chunk's reply (BDAT).
    async fn open(&self, envelope: &Envelope) -> Result<Box<dyn SpoolWriter>, SpoolError>;
}

/// One message being written. Dropped without `commit` or `abort` only when its session was
/// cut (a shutdown's grace period ran out): the implementation must then forget the message,
/// as after `abort` (never deliver half of one).
#[async_trait]
pub trait SpoolWriter: Send {
    /// The message's id, known from the start (it goes in the relay's `Received:` field).
    fn id(&self) -> &QueueId;

    /// The next bytes of the message, as they arrived (dot-stuffing removed, CRLF line
    /// endings). After an error the session reads the rest of the message, discards it and
    /// answers with the error's reply; it does not call `commit`.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError>;

    /// The whole message was written: make it durable, and only then return its id. The
    /// client is answered `250` if and only if this returns `Ok`.
    async fn commit(self: Box<Self>, facts: &MessageFacts) -> Result<QueueId, SpoolError>;

    /// The relay refused the message (or the client went away): forget it.
    async fn abort(self: Box<Self>);
}
