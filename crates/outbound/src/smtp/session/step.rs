//! What one step of a transaction leaves: the [`Session`] comes back only while its connection
//! can carry another command, so a caller holding a session never asks whether it is usable.

use super::Session;
use crate::smtp::verdict::Reached;
use crate::Error;

/// The outcome of one step that reads a reply.
#[must_use]
pub(crate) enum Step<T> {
    /// The step succeeded.
    Done(Session, T),
    /// The server refused (its reply is the error); the connection stays usable, the
    /// transaction was reset when it needed to be.
    Refused(Session, Error),
    /// The server closed the session with a `421`, the error: it processed nothing after it.
    Closed(Error),
    /// The connection failed, or the server's state became unknown.
    Lost(Lost),
}

/// A connection lost under a message.
#[derive(Debug)]
pub(crate) struct Lost {
    pub error: Error,
    /// What the server may have had of the message in flight (as the I/O recorded it).
    pub reached: Reached,
}

impl Session {
    /// The step that gave `result` on this session.
    pub(super) fn step<T>(self, result: Result<T, Error>) -> Step<T> {
        match (result, self.conn.broken()) {
            // A result is never dropped: should the connection have broken after it (no step
            // does that), the next step on it fails.
            (Ok(v), _) => Step::Done(self, v),
            (Err(e), None) => Step::Refused(self, e),
            (Err(e), Some(None)) => Step::Closed(e),
            (Err(error), Some(Some(reached))) => Step::Lost(Lost { error, reached }),
        }
    }

    /// The session after a write: a write fails only with its connection.
    pub(super) fn wrote(self, result: Result<(), Error>) -> Result<Session, Lost> {
        match result {
            Ok(()) => Ok(self),
            Err(error) => Err(Lost {
                error,
                // Every failed write records how far it got; if one did not, assume the worst.
                reached: self.conn.broken().flatten().unwrap_or(Reached::Whole),
            }),
        }
    }

    /// The session, if its connection can carry another command.
    pub(super) fn usable(self) -> Option<Session> {
        match self.conn.broken() {
            None => Some(self),
            Some(_) => {
                tracing::debug!(conn = self.id(), "discarding a connection that failed");
                None
            }
        }
    }
}

#[cfg(test)]
impl<T> Step<T> {
    /// The session if it is still usable, and the step's result.
    pub(crate) fn into_parts(self) -> (Option<Session>, Result<T, Error>) {
        match self {
            Step::Done(s, v) => (Some(s), Ok(v)),
            Step::Refused(s, e) => (Some(s), Err(e)),
            Step::Closed(e) | Step::Lost(Lost { error: e, .. }) => (None, Err(e)),
        }
    }
}
