//! What the journal records about a line: its state, its row as read back, an in-flight
//! mark and an outcome.

use crate::bulk::input::LineHash;

/// Rows fetched at a time when comparing or reading states in line order.
pub(super) const CHUNK: u64 = 2048;

/// The state of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LineState {
    /// Not sent yet.
    Pending,
    /// Marked durably before its content was sent; no outcome recorded yet. After a crash
    /// these are the lines in doubt.
    InFlight,
    /// Accepted by the server (the receipt's provider id is recorded).
    Delivered,
    /// Refused or failed before anything was delivered (the error kind is recorded); a
    /// re-run sends it again.
    Failed,
    /// It may or may not have been delivered (the connection broke after the content went
    /// out, or the run was interrupted while it was in flight). Not resent unless asked.
    Ambiguous,
    /// The line is not a valid message description (reported with its line number).
    Malformed,
    /// An empty line (skipped).
    Blank,
}

impl LineState {
    /// The name stored in the journal and shown by `--status`.
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Pending => "pending",
            LineState::InFlight => "in_flight",
            LineState::Delivered => "delivered",
            LineState::Failed => "failed",
            LineState::Ambiguous => "ambiguous",
            LineState::Malformed => "malformed",
            LineState::Blank => "blank",
        }
    }

    /// The state named `name` (as stored).
    pub fn parse(name: &str) -> Option<LineState> {
        Some(match name {
            "pending" => LineState::Pending,
            "in_flight" => LineState::InFlight,
            "delivered" => LineState::Delivered,
            "failed" => LineState::Failed,
            "ambiguous" => LineState::Ambiguous,
            "malformed" => LineState::Malformed,
            "blank" => LineState::Blank,
            _ => return None,
        })
    }
}

/// One line's row, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The line number (from 1).
    pub line: u64,
    /// Its state.
    pub state: LineState,
    /// The Message-ID it was (or will be) sent with.
    pub message_id: Option<String>,
    /// For failed lines, the error kind (`transient`, `permanent`, …); for in-doubt lines
    /// `ambiguous` or `interrupted`.
    pub kind: Option<String>,
    /// The server's code, when it gave one.
    pub code: Option<u32>,
    /// The error or the reason, for humans.
    pub detail: Option<String>,
    /// The provider's id from the receipt (the SMTP queue id, Resend's email id).
    pub provider_id: Option<String>,
    /// How many times the line was marked in flight (sent), over all runs.
    pub sends: u32,
}

/// The outcome of one line, to record.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted; the provider's id when there is one.
    Delivered {
        /// The receipt's provider id.
        provider_id: Option<String>,
    },
    /// Failed before anything was delivered.
    Failed {
        /// The error kind (`ErrorKind::as_str`).
        kind: &'static str,
        /// The server's code.
        code: Option<u32>,
        /// The error, for humans.
        detail: String,
    },
    /// May have been delivered.
    Ambiguous {
        /// `ambiguous` (the transport said so) or `interrupted` (found in flight by a re-run).
        kind: &'static str,
        /// Why.
        detail: String,
    },
    /// Not a valid line.
    Malformed {
        /// Why.
        detail: String,
    },
    /// An empty line (nothing to send).
    Blank,
    /// Marked in flight but not sent after all (the run stopped first): pending again.
    Unsent,
}

/// A line to mark in flight: its number, the hash of its text
/// ([`line_hash`](crate::bulk::line_hash)) and the Message-ID it is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The line number (from 1).
    pub line: u64,
    /// The hash of the line's text, recorded with its row to notice a changed input.
    pub hash: LineHash,
    /// The Message-ID the line is sent with.
    pub message_id: String,
}
