//! What every session of one relay shares: its name, limits, access rules, users, the AUTH
//! failure table, the TLS acceptor and the spool.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::access::AccessPolicy;
use super::limits::{AuthFailures, Limits};
use super::spool::Spool;
use super::users::Users;

pub(crate) struct Context {
    /// The relay's host name: greeting, EHLO, `Received:`, added Message-IDs.
    pub host: String,
    pub limits: Limits,
    pub access: AccessPolicy,
    pub users: Option<Users>,
    pub failures: AuthFailures,
    /// Password checks running at once (each Argon2id check takes about 19 MiB).
    pub checks: Semaphore,
    pub spool: Arc<dyn Spool>,
    pub tls: Option<TlsAcceptor>,
    /// CHUNKING (BDAT, RFC 3030) is announced.
    pub chunking: bool,
}
