//! Test support for Outbound's integration tests (`publish = false`), used as a
//! dev-dependency by `outbound-live-tests`, and by any test that needs a helper below.
//!
//! - [`testenv`]: the settings `testenv/smtp-servers.sh start` writes to
//!   `$OUTBOUND_TESTENV_DIR/env` (default `/tmp/outbound-testenv/env`), and [`unique`] tokens.
//! - [`maildir`]: the shared Maildir Postfix delivers every `@example.test` message to.
//! - [`maillog`]: Postfix's maillog, to count connections and sessions server-side.
//! - [`fault_smtpd`]: `testenv/fault_smtpd.py`, the aiosmtpd fault-injection server.
//! - [`proxy`]: an in-process TCP proxy that breaks the connections it carries.
//! - [`configured()`]: a transport built from Dify's variables given as pairs.
//! - [`trace`]: the whole run's library events at TRACE into files, for the secrets scan.
//! - [`oauth`]: a private instance of the OAuth2 token server `testenv/oauth/token-server.js`,
//!   and Microsoft-shaped error bodies.
//!
//! Everything that needs a server panics, saying how to start it ("test servers not running:
//! run testenv/smtp-servers.sh start"), when it is missing: a test using it never skips
//! quietly. [`proxy`] and the pure functions ([`unique`], [`crlf_to_lf`], [`header_value`],
//! [`delivered_to`], [`max_overlap`]) need no server.
//!
//! Helpers panic instead of returning errors (that is how a test fails), hence the `unwrap`s.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

mod configured;
pub mod fault_smtpd;
pub mod maildir;
pub mod maillog;
pub mod oauth;
pub mod proxy;
pub mod testenv;
pub mod trace;

pub use configured::configured;
pub use fault_smtpd::FaultServer;
pub use maildir::{crlf_to_lf, delivered_to, header_value, Maildir};
pub use maillog::{max_overlap, Maillog, SmtpdSession};
pub use testenv::{unique, TestEnv};
