//! One SMTP session, by phase:
//!
//! ```text
//! opening      connect ─▶ [TLS handshake (implicit)] ─▶ greeting ─▶ EHLO
//!                      ─▶ [STARTTLS ─▶ handshake ─▶ EHLO] ─▶ [AUTH] ─▶ Session (ready) ◀──┐
//!                                                                         │               │
//! transaction  MAIL FROM, RCPT TO…, DATA (one write when PIPELINING)  ◀────┘               │
//!                      ─▶ payload ─▶ "." ─▶ 2xx/4xx/5xx at the end of DATA ───────────────┤
//!              refused midway ─▶ RSET ────────────────────────────────────────────────────┘
//!
//!              any I/O failure, timeout or 421 ─▶ the connection is dropped
//! ```
//!
//! Why by phase: the phase at the moment something fails decides what the failure *means*. A
//! broken connection after the final `.` went out is [`ErrorKind::Ambiguous`] — the server may
//! have queued the message — and must never be retried silently; the same failure one step
//! earlier is safe to retry. The I/O records how far a message got (`verdict::Reached`) and
//! `smtp::verdict` says what that means. The types keep the phases apart: an `Opening` is a
//! connection on its way (greeting, EHLO, STARTTLS, AUTH) and `Opening::login` is the only way
//! to a ready [`Session`]; only a `Session` runs a transaction, and each step of one consumes
//! the session and gives it back only while its connection is usable ([`Step`]), so the pool
//! only ever holds usable connections. `RSET` is sent only after a transaction failed midway.
//!
//! Every phase has its own timeout ([`Timeouts`]): connect, TLS handshake, greeting, each
//! command's reply, and the end of DATA (writing the payload and waiting for the final reply).
//!
//! The files: `params` (what a connection is opened with, [`Timeouts`]), `opening` (connect to
//! ready), `sasl` (the AUTH exchange), `capabilities` (the EHLO reply), `ready` (the ready
//! [`Session`]), `preflight` (what is checked before MAIL FROM), `transaction` (MAIL, RCPT,
//! DATA, RSET in one go), `pipeline` (the same transaction in steps, so the next one's
//! commands can follow the final `.`, and `BDAT`), `step` (what a step leaves), `io` (replies
//! and writes within their time limits, and how far a message got when one fails), `socket`
//! (TCP options). This file only names them: each uses its siblings, never its parent.
//!
//! [`ErrorKind::Ambiguous`]: crate::ErrorKind::Ambiguous

mod capabilities;
mod io;
mod opening;
mod params;
mod pipeline;
mod preflight;
mod ready;
mod sasl;
mod socket;
mod step;
mod transaction;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use capabilities::mechanism_bit;
pub(crate) use capabilities::Capabilities;
pub(crate) use io::Connection;
pub use params::Timeouts;
pub(crate) use params::{secs, ConnectParams};
pub(crate) use pipeline::{BdatSent, Outline};
pub(crate) use ready::Session;
pub(crate) use step::{Lost, Step};
pub(crate) use transaction::{Accepted, Delivery};
