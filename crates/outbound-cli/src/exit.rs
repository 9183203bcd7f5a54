//! Exit codes (sysexits, as sendmail-style tools use them) and the failure type commands
//! return.

use std::fmt;

use outbound::{Error, ErrorKind};

/// Sent, or the check passed.
pub const OK: u8 = 0;
/// EX_USAGE: the command line is wrong.
pub const USAGE: u8 = 64;
/// EX_SOFTWARE: an internal error (e.g. the async runtime could not start).
pub const SOFTWARE: u8 = 70;

/// Why a command failed: a usage mistake the library never sees, or a library error (which
/// includes unreadable input, as kind `InvalidMessage`).
#[derive(Debug)]
pub enum Failure {
    /// A malformed flag value that clap cannot check (e.g. `--header` without a colon).
    Usage(String),
    /// Anything else; the exit code follows the error's kind.
    Error(Error),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => USAGE,
            Failure::Error(err) => for_kind(err.kind()),
        }
    }

    /// The stable name used in JSON output.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Error(err) => err.kind().as_str(),
        }
    }

    /// The library error, when there is one.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Failure::Usage(_) => None,
            Failure::Error(err) => Some(err),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(msg) => write!(f, "usage error: {msg}"),
            Failure::Error(err) => write!(f, "{err}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Error(err)
    }
}

impl From<outbound::MessageError> for Failure {
    fn from(err: outbound::MessageError) -> Self {
        Failure::Error(err.into())
    }
}

/// The exit code for an error kind (see [`outbound_cli::Sysexits`]).
pub fn for_kind(kind: ErrorKind) -> u8 {
    use outbound_cli::Sysexits;
    u8::try_from(kind.exit_code()).unwrap_or(SOFTWARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let code = |k| Failure::Error(Error::new(k, "x")).code();
        assert_eq!(code(ErrorKind::Config), 78);
        assert_eq!(code(ErrorKind::InvalidMessage), 65);
        assert_eq!(code(ErrorKind::Auth), 77);
        assert_eq!(code(ErrorKind::Permanent), 69);
        assert_eq!(code(ErrorKind::Tls), 69);
        assert_eq!(code(ErrorKind::Transient), 75);
        assert_eq!(code(ErrorKind::Ambiguous), 75);
        assert_eq!(code(ErrorKind::Timeout), 75);
        assert_eq!(code(ErrorKind::Network), 75);
        assert_eq!(Failure::Usage("x".into()).code(), 64);
    }
}
