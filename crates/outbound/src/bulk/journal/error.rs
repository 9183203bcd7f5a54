//! Why the journal could not be used.

use std::path::PathBuf;

use super::log::SCHEMA_VERSION;
use super::store::StoreError;

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// SQLite failed (the file is unreadable, locked, full or corrupt).
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The input could not be read.
    #[error("cannot read the input {path}: {source}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not the one the journal was made for: mixing two runs could skip or
    /// resend the wrong messages.
    #[error(
        "the journal {journal} was made for another input: line {line} of {input} differs from \
         what the journal recorded for {recorded} ({why}); use a new journal for a new input, or \
         give the original input unchanged"
    )]
    InputChanged {
        /// The journal file.
        journal: PathBuf,
        /// The input given now.
        input: PathBuf,
        /// The input the journal was made for.
        recorded: String,
        /// The first line that differs.
        line: u64,
        /// How it differs.
        why: &'static str,
    },
    /// The file is not a journal this version understands.
    #[error("{path} is not an outbound bulk journal of format {SCHEMA_VERSION} ({why})")]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another run is using this journal now; two runs at once could send a line twice.
    #[error(
        "another `outbound bulk` is using the journal {path} now (its lock {lock} is held); \
         wait for it to finish"
    )]
    Busy {
        /// The journal file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The journal's writer stopped (after an earlier error).
    #[error("the journal writer stopped: {0}")]
    WriterStopped(String),
}

impl From<StoreError> for JournalError {
    fn from(e: StoreError) -> JournalError {
        match e {
            StoreError::Sqlite { path, source } => JournalError::Sqlite { path, source },
            StoreError::Busy { path, lock } => JournalError::Busy { path, lock },
            StoreError::Version { path, found } => JournalError::NotAJournal {
                path,
                why: format!("its format is {found}"),
            },
        }
    }
}
