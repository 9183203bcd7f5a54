//! What a failure means for each message: the one place in `smtp/` that decides whether a
//! message that got no positive reply failed and is safe to send again, or is
//! [`Ambiguous`](ErrorKind::Ambiguous) (it may have been delivered, so nothing sends it again
//! on its own). A message is delivered only on the server's positive reply to the end of its
//! data; everything else is judged here.
//!
//! The judgement rests on what the server may have received of the message, its [`Reached`],
//! which the I/O records as it writes (`session::io` counts the bytes the stream took), and on
//! how its exchange ended ([`End`]):
//!
//! | reached \ end | answered | connection lost | lost under another | 421 before it |
//! |---|---|---|---|---|
//! | [`Nothing`](Reached::Nothing) | its reply's kind | safe | not started | not started |
//! | [`Commands`](Reached::Commands) | its reply's kind | safe | safe, elsewhere | safe, elsewhere |
//! | [`Whole`](Reached::Whole) | its reply's kind | **Ambiguous** | **Ambiguous** | safe, elsewhere |
//!
//! - *safe*: a Network or Timeout error; on a connection that had carried a message before
//!   (it may have died while idle) a Network failure may go once more on another connection
//!   ("elsewhere", counted as an attempt); a fresh connection's failure goes to the caller.
//! - *safe, elsewhere*: its commands went out behind another message, which failed; nothing of
//!   its data did (or the server said `421`, so it processed nothing after): it goes once
//!   more on another connection.
//! - *not started*: nothing of it was written: it is handed back and goes to another
//!   connection without counting as an attempt.
//! - *answered*: the server's own reply to it (a refusal, a `421` to its end of data) says it
//!   was not delivered; its code decides the kind. A reply that does not answer it (an RSET
//!   refused right before its whole `BDAT … LAST` chunk) leaves it Ambiguous ([`unclear`]).

use crate::{Error, ErrorKind};

/// What the server may have received of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reached {
    /// Nothing: it was refused before anything was written, or never written.
    Nothing,
    /// Its commands, perhaps part of its data, never its end: no byte of its final `.` and
    /// not the whole of its `BDAT … LAST` chunk was taken by the stream. The server cannot
    /// have accepted it.
    Commands,
    /// Its end: a byte of its final `.`, or the whole `BDAT … LAST` chunk, was taken by the
    /// stream. The server may have accepted it.
    Whole,
}

/// How the exchange of a message that got no positive reply ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The server answered it with a refusal.
    Answered(Error),
    /// Its own exchange failed: the connection failed, closed or timed out, or the server
    /// sent no reply that can be read. The error was made by [`connection_failed`].
    Lost(Error),
    /// The connection was lost under another message while this one waited for its replies.
    LostUnder,
    /// The server closed the session (`421`) in reply to an earlier command: it processed
    /// nothing after that reply.
    ClosedBefore,
}

/// What becomes of a message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Nothing of it was written: it goes to another connection, not counted as an attempt.
    NotStarted,
    /// It was not delivered. `elsewhere`: it may be sent once more on another connection.
    Failed { error: Error, elsewhere: bool },
    /// It may have been delivered: it is never sent again without the caller asking.
    Ambiguous(Error),
}

/// Judges a message that reached `reached` and ended as `end`, on a connection that had
/// carried a message before it when `reused`.
pub(crate) fn judge(reached: Reached, end: End, reused: bool) -> Verdict {
    match (reached, end) {
        (_, End::Answered(error)) => Verdict::Failed {
            error,
            elsewhere: false,
        },
        (Reached::Whole, End::Lost(error)) => ambiguous(error),
        (_, End::Lost(error)) => {
            // A pooled connection found dead before this message's end: nothing delivered.
            let elsewhere = reused && error.kind() == ErrorKind::Network;
            Verdict::Failed { error, elsewhere }
        }
        (Reached::Nothing, End::LostUnder | End::ClosedBefore) => Verdict::NotStarted,
        (Reached::Commands, End::LostUnder) => Verdict::Failed {
            error: Error::new(
                ErrorKind::Network,
                "the connection was lost before this message's data was sent (its commands were \
                 pipelined behind another message's); nothing of it was delivered",
            ),
            elsewhere: true,
        },
        (Reached::Whole, End::LostUnder) => Verdict::Ambiguous(Error::new(
            ErrorKind::Ambiguous,
            "the connection was lost while waiting for the replies to this message's \
             transaction (BDAT, pipelined behind another message's): the server had the whole \
             message, so it may have been delivered; it was not retried",
        )),
        (_, End::ClosedBefore) => Verdict::Failed {
            error: Error::new(
                ErrorKind::Network,
                "the server closed the session (421) before this message's transaction: \
                 nothing of it was delivered",
            ),
            elsewhere: true,
        },
    }
}

/// The error of a message whose transaction the server did not answer as its own: it refused
/// the RSET written right before it (`said`), and what it made of the rest is unknown. Once
/// the message reached [`Reached::Whole`] it may have been delivered.
pub(crate) fn unclear(reached: Reached, said: &str) -> Error {
    if reached == Reached::Whole {
        Error::new(
            ErrorKind::Ambiguous,
            format!(
                "the server refused the RSET before this message's transaction ({said}) but had \
                 the whole message: it may have been delivered; it was not retried"
            ),
        )
    } else {
        Error::new(
            ErrorKind::Network,
            format!(
                "the server refused the RSET before this message's transaction ({said}); nothing \
                 of it was delivered"
            ),
        )
    }
}

/// A lost connection's error is already Ambiguous when it was made with [`Reached::Whole`]
/// ([`connection_failed`]); should one not be, it is made so: its kind must never say
/// "safe to resend" for a message the server may have.
fn ambiguous(error: Error) -> Verdict {
    if error.kind() == ErrorKind::Ambiguous {
        return Verdict::Ambiguous(error);
    }
    let message = error.message().to_string();
    Verdict::Ambiguous(connection_failed(Reached::Whole, error.kind(), message))
}

/// The error for a connection that failed (`kind`, said by `message`) while a message had
/// reached `reached`: from [`Reached::Whole`] on it is Ambiguous, before that it is the
/// failure's own kind (Network, Timeout; Permanent for an unreadable reply).
pub(crate) fn connection_failed(reached: Reached, kind: ErrorKind, message: String) -> Error {
    match reached {
        Reached::Whole => Error::new(
            ErrorKind::Ambiguous,
            format!(
                "{message} after the end of DATA was sent: the message may have been delivered; \
                 it was not retried"
            ),
        ),
        Reached::Nothing | Reached::Commands => Error::new(kind, message),
    }
}

/// A send whose connections kept closing before it started (each time [`Verdict::NotStarted`]):
/// nothing of it was written.
pub(crate) fn kept_closing(host: &str) -> Error {
    Error::new(
        ErrorKind::Network,
        format!(
            "connections to {host} kept closing before the message could be sent; nothing was \
             sent"
        ),
    )
}

/// A send whose connection's task ended without answering it: how far it got is unknown, so
/// it may have reached [`Reached::Whole`].
pub(crate) fn no_answer() -> Error {
    Error::new(
        ErrorKind::Ambiguous,
        "the SMTP connection's task stopped while the message was being sent (the async \
         runtime shut down?): it may have been delivered; it was not retried",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(reached: Reached) -> Error {
        connection_failed(
            reached,
            ErrorKind::Network,
            "mx closed the connection".into(),
        )
    }

    #[test]
    fn a_message_whose_end_may_have_been_taken_is_never_safe_to_resend() {
        for reused in [false, true] {
            for end in [End::Lost(lost(Reached::Whole)), End::LostUnder] {
                let shown = format!("{end:?}");
                match judge(Reached::Whole, end, reused) {
                    Verdict::Ambiguous(e) => assert_eq!(e.kind(), ErrorKind::Ambiguous),
                    other => panic!("{shown}: {other:?}"),
                }
            }
        }
        assert_eq!(
            unclear(Reached::Whole, "502 no").kind(),
            ErrorKind::Ambiguous
        );
        assert_ne!(
            unclear(Reached::Commands, "502 no").kind(),
            ErrorKind::Ambiguous
        );
        // Only a 421 before it (it processed nothing after) or its own reply say otherwise.
        assert!(matches!(
            judge(Reached::Whole, End::ClosedBefore, true),
            Verdict::Failed {
                elsewhere: true,
                ..
            }
        ));
        let refused = Error::new(ErrorKind::Permanent, "554 no");
        assert!(matches!(
            judge(Reached::Whole, End::Answered(refused), true),
            Verdict::Failed {
                elsewhere: false,
                ..
            }
        ));
    }

    #[test]
    fn before_its_end_a_message_is_safe_and_goes_elsewhere_only_from_a_reused_connection() {
        for reached in [Reached::Nothing, Reached::Commands] {
            let err = lost(reached);
            assert_eq!(err.kind(), ErrorKind::Network);
            assert!(matches!(
                judge(reached, End::Lost(lost(reached)), false),
                Verdict::Failed {
                    elsewhere: false,
                    ..
                }
            ));
            assert!(matches!(
                judge(reached, End::Lost(lost(reached)), true),
                Verdict::Failed {
                    elsewhere: true,
                    ..
                }
            ));
            // A timeout says nothing about the connection having died while idle.
            let timeout = connection_failed(reached, ErrorKind::Timeout, "slow".into());
            assert!(matches!(
                judge(reached, End::Lost(timeout), true),
                Verdict::Failed {
                    elsewhere: false,
                    ..
                }
            ));
        }
        assert!(matches!(
            judge(Reached::Commands, End::LostUnder, true),
            Verdict::Failed {
                elsewhere: true,
                ..
            }
        ));
        assert!(matches!(
            judge(Reached::Nothing, End::LostUnder, true),
            Verdict::NotStarted
        ));
        assert!(matches!(
            judge(Reached::Nothing, End::ClosedBefore, true),
            Verdict::NotStarted
        ));
    }

    #[test]
    fn a_lost_message_that_reached_its_end_is_ambiguous_whatever_kind_came_with_it() {
        let network = Error::new(ErrorKind::Network, "mx closed the connection");
        match judge(Reached::Whole, End::Lost(network), true) {
            Verdict::Ambiguous(e) => {
                assert_eq!(e.kind(), ErrorKind::Ambiguous);
                assert!(e.message().contains("mx closed the connection"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lost_after_the_end_says_it_may_have_been_delivered() {
        let err = lost(Reached::Whole);
        assert_eq!(err.kind(), ErrorKind::Ambiguous);
        assert!(err.message().contains("may have been delivered"), "{err}");
        assert!(no_answer().kind() == ErrorKind::Ambiguous);
    }

    #[test]
    fn send_errors_read_as_one_sentence() {
        for err in [kept_closing("mx.example"), no_answer()] {
            let text = err.to_string();
            assert!(!text.contains("  "), "a run of spaces in {text:?}");
            assert!(!text.contains('\n'), "{text:?}");
        }
        assert_eq!(
            kept_closing("mx.example").message(),
            "connections to mx.example kept closing before the message could be sent; nothing \
             was sent"
        );
    }
}
