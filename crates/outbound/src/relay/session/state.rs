//! The session's state: the phase of the protocol as explicit states, and the facts that
//! outlive a transaction (the EHLO name, TLS, the authenticated user).
//!
//! ```text
//!  Greeted --EHLO/HELO--> Ready --MAIL--> MailFrom --RCPT--> Rcpts --DATA--> (message) --> Ready
//!     ^                     |                                  |
//!     +----STARTTLS---------+                                  +--BDAT--> Chunking --BDAT LAST--> Ready
//! ```
//!
//! STARTTLS (from `Ready`) goes back to `Greeted` and forgets the EHLO name and any AUTH
//! (RFC 3207 section 4.2). AUTH (from `Ready`) sets the user. EHLO, HELO and RSET end a
//! transaction in any phase; so does the end of every message, accepted or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::io::{Conn, Shutdown};
use super::receiving::Receiving;
use crate::relay::context::Context;
use crate::relay::data::ChunkChecker;
use crate::relay::reply::Reply;
use crate::relay::spool::Envelope;
use crate::relay::users::AuthenticatedUser;

/// Where the protocol is.
pub(crate) enum Phase {
    /// The greeting was sent (or STARTTLS was done): EHLO or HELO comes next.
    Greeted,
    /// EHLO or HELO done, no transaction.
    Ready,
    /// MAIL accepted, no recipient yet.
    MailFrom(Transaction),
    /// At least one recipient accepted: DATA or BDAT may come.
    Rcpts(Transaction),
    /// BDAT chunks of a message are arriving.
    Chunking(Box<Chunks>),
}

/// One message's envelope as it is being given.
pub(crate) struct Transaction {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub smtputf8: bool,
    pub eight_bit: bool,
}

/// A BDAT message under way.
pub(crate) struct Chunks {
    pub envelope: Envelope,
    pub receiving: Receiving,
    pub checker: ChunkChecker,
}

/// The EHLO or HELO the client gave.
pub(crate) struct Helo {
    pub name: String,
    /// EHLO (ESMTP) rather than HELO.
    pub extended: bool,
}

pub(crate) struct Session {
    pub ctx: Arc<Context>,
    pub conn: Conn,
    pub client: SocketAddr,
    pub phase: Phase,
    pub helo: Option<Helo>,
    pub tls: bool,
    pub user: Option<AuthenticatedUser>,
    /// Commands answered with an error so far.
    pub errors: usize,
    pub shutdown: Shutdown,
}

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

impl Session {
    /// The envelope the spool gets for `tx`.
    pub(crate) fn envelope(&self, tx: Transaction) -> Envelope {
        Envelope {
            mail_from: tx.mail_from,
            rcpt_to: tx.rcpt_to,
            user: self.user.clone(),
            client: self.client,
            helo: self
                .helo
                .as_ref()
                .map(|h| h.name.clone())
                .unwrap_or_default(),
            tls: self.tls,
            smtputf8: tx.smtputf8,
            eight_bit: tx.eight_bit,
            received_at: SystemTime::now(),
        }
    }

    /// Ends any transaction (a BDAT message under way is given up).
    pub(crate) async fn reset(&mut self) {
        let next = match self.phase {
            Phase::Greeted => Phase::Greeted,
            _ => Phase::Ready,
        };
        let phase = std::mem::replace(&mut self.phase, next);
        if let Phase::Chunking(chunks) = phase {
            chunks.receiving.abort().await;
        }
    }

    /// Answers an error; counts it.
    pub(crate) fn refuse(&mut self, reply: &Reply) {
        self.errors += 1;
        self.conn.reply(reply);
    }
}
