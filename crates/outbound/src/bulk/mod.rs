//! Sending many messages from a JSON Lines file, with a journal that makes a re-run resume
//! exactly (the library behind `outbound bulk`).
//!
//! - [`input`]: one message per line, the fields of `outbound send` ([`BulkLine`]), read as
//!   a stream with line numbers; a malformed line is reported and counted, and the run goes
//!   on.
//! - [`journal`]: a SQLite file (WAL) with each line's state: pending, in flight, delivered
//!   (with the provider's id), failed (with the error kind), ambiguous, malformed. It stores a
//!   hash of every line and refuses an input that differs from the one it was made for.
//! - [`runner`]: [`BulkRun`] sends with `concurrency` workers through any [`Transport`]
//!   (with whatever layers it was built with: retry, rate, failover).
//!
//! # What a re-run with the same journal does
//!
//! | state found | what happens |
//! |---|---|
//! | delivered | skipped |
//! | failed (nothing was delivered) | sent again |
//! | pending, malformed | read again (sent, or reported malformed again) |
//! | in flight (the run stopped while sending it) | listed as in doubt and recorded `ambiguous` (`interrupted`), not resent; resent at once on an idempotent transport (Resend: the same Message-ID and body give the same Idempotency-Key), or with `resend_ambiguous` |
//! | ambiguous | listed as in doubt, not resent unless `resend_ambiguous` |
//!
//! Every line gets a stable Message-ID, `bulk.<run id>.<line>@<sender's domain>` (unless
//! the line gives its own), recorded in the journal, so a resent line is the same message.
//!
//! # The bound on lines in doubt
//!
//! A sending task takes up to `batch` lines and marks them in flight in one commit; it sends
//! them one after the other only once that commit is done, queueing each outcome without
//! waiting. While it sends one batch, the mark of its next batch is being committed (so the
//! `fsync` overlaps the sends), and the outcomes of a batch are committed no later than the
//! mark after next, in the same group transaction. So at any instant a task has at most two
//! batches whose in-flight mark is committed and whose outcomes are not, and a crash (even
//! `kill -9`) leaves **at most `concurrency × 2 × batch` lines in doubt per interruption**.
//!
//! `batch` is a ceiling (default 64): a task starts with batches of one line and doubles its
//! batch only when a batch took it less than 20 ms to send, or it finished sending one before
//! the next one's mark was committed. So a crash leaves in doubt about 40 ms of each task's
//! sending: a transport that takes 20 ms or more a message (a server across a network, a
//! rate cap) keeps the batch at one line, so at most `concurrency × 2` lines are in doubt (8
//! with the default concurrency of 4); only a fast run (thousands of messages a second)
//! grows it, up to `concurrency × 2 × batch` (4 × 2 × 64 = 512). Commits, not lines, are what
//! the journal costs, so a fast run needs fewer, larger ones. [`Transport::send_prepared`]
//! sends one message per call, so no transport adds to the bound. The lines in doubt
//! include those marked but not yet sent when the run stopped (they cannot be told apart).
//!
//! Commits are grouped: after the first request the writer thread waits until every sending
//! task has marked (at most 10 ms), then commits everything queued in one transaction (one
//! `fsync`, synchronous=FULL), so a commit usually carries every task's next batch.
//!
//! Each commit is one row of a log (the group's marks and outcomes, encoded together); the
//! log becomes a row per line, with the hash of its text, when the journal is reopened, and
//! `--status` reads through it. A line without a row is pending. The line count is recorded once a run has read the whole input. A re-run checks
//! every recorded line's hash and, once known, the count, and refuses a changed input.
//!
//! A run stops early (remaining lines stay pending for a re-run) when a send fails in a way
//! every later send would too: configuration, authentication, TLS.
//!
//! ```
//! use std::sync::Arc;
//! use outbound::bulk::{BulkOptions, BulkRun, Quiet};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let input = dir.path().join("invites.jsonl");
//! std::fs::write(&input, "{\"to\":\"ada@example.com\",\"subject\":\"Join us\",\"text\":\"hi\"}\n")?;
//! let transport = outbound::from_dsn("memory://default?from=team@example.com")?;
//! let options = BulkOptions { concurrency: 8, journal: Some(dir.path().join("invites.journal")), ..BulkOptions::default() };
//! let summary = BulkRun::new(transport, options).run(&input, Arc::new(Quiet)).await?;
//! assert_eq!(summary.delivered, 1);
//! # Ok(()) }
//! ```
//!
//! [`Transport`]: crate::Transport
//! [`Transport::send_prepared`]: crate::Transport::send_prepared

pub mod input;
pub mod journal;
pub mod runner;

pub use input::BulkLine;
pub use input::{line_hash, LineHash, RawLine};
pub use journal::{
    Journal, JournalError, JournalStatus, JournalSync, LineRecord, LineState, Mark, Outcome,
};
pub use runner::{BulkError, BulkOptions, BulkRun, InDoubt, LineEvent, Observer, Quiet, Summary};
