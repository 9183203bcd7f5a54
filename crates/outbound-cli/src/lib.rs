//! The contract of the `outbound` command that other programs rely on, as a library: its exit
//! codes. (The command itself lives in `main.rs` and the modules beside it; this crate's
//! library part is deliberately tiny.)
//!
//! The codes follow sysexits, as sendmail-style tools do, so a job queue or a shell script can
//! tell "retry later" (75) from "fix the configuration" (78):
//!
//! ```
//! use outbound::ErrorKind;
//! use outbound_cli::Sysexits;
//! assert_eq!(ErrorKind::Auth.exit_code(), 77);
//! assert_eq!(ErrorKind::Ambiguous.exit_code(), 75);
//! let err = outbound::Error::new(ErrorKind::Config, "MAIL_TYPE is `smpt`");
//! assert_eq!(err.exit_code(), 78);
//! ```

use outbound::{Error, ErrorKind};

/// The sysexits code the `outbound` command exits with for a failure.
pub trait Sysexits {
    /// 65 invalid message or input; 69 permanently rejected, or the server cannot be used
    /// securely (TLS); 75 temporary failure (transient, timeout, network) and ambiguous
    /// outcomes; 77 authentication or permission; 78 configuration.
    fn exit_code(&self) -> i32;
}

impl Sysexits for ErrorKind {
    fn exit_code(&self) -> i32 {
        match self {
            ErrorKind::Config => 78,
            ErrorKind::InvalidMessage => 65,
            ErrorKind::Auth => 77,
            ErrorKind::Permanent | ErrorKind::Tls => 69,
            ErrorKind::Transient
            | ErrorKind::Ambiguous
            | ErrorKind::Timeout
            | ErrorKind::Network => 75,
            // A kind added later that this table does not know yet: EX_SOFTWARE.
            _ => 70,
        }
    }
}

impl Sysexits for Error {
    fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }
}
