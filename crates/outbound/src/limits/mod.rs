//! Limits shared by every process that sends as one account: the connection cap and the rate,
//! held in Redis so that ten workers with a pool of 3 open 3 connections between them, not 30.
//!
//! Two things are shared, each behind a small trait so the layer or the pool that enforces it
//! does not know where the count lives:
//!
//! - [`ConnectionSlots`]: a cluster-wide semaphore per (server, account). The SMTP pool takes a
//!   [`ConnectionLease`] before it opens a connection and holds it while the connection lives.
//!   The same trait is the pool's own cap in one process ([`LocalSlots`], its default); a
//!   shared cap is held within it, one lease for both. In Redis a lease is a member of a
//!   sorted set scored by its expiry; the holder renews it while the connection lives, so a
//!   process that dies (even `kill -9`) loses its slots within the lease time. Waiters queue in ticket order, and a holder gives its slot back
//!   after its current message when others wait, so no process starves.
//! - [`SharedRate`]: the one seam every rate limit decides through (`rate.rs`). Its default is
//!   [`LocalRate`], the one GCRA (`gcra.rs`), in this process; in Redis it is the same GCRA as
//!   one atomic Lua script per decision, on Redis's clock (so the machines' clocks need not
//!   agree).
//!
//! When Redis is unreachable or slow, [`FailPolicy`] decides: `local` (the default) falls back
//! to per-process limits with a loud warning, `wait` waits a bounded time for Redis and then
//! fails the send with a temporary error (nothing sent, so nothing lost). Either way the
//! shared limits hold again once Redis answers: leases granted meanwhile ask Redis for a real
//! slot, and a connection that cannot get one is closed after its current message.
//!
//! Keys (`{…}` is a Redis Cluster hash tag; `ID` is the first 32 hex digits of a SHA-256 of
//! the account's identity, so no host name, user name or secret is stored):
//!
//! | key | type | what |
//! |---|---|---|
//! | `outbound:v1:conn:{ID}:holders` | sorted set | lease id → expiry (ms, Redis time) |
//! | `outbound:v1:conn:{ID}:queue` | sorted set | waiter id → ticket (FIFO order) |
//! | `outbound:v1:conn:{ID}:waiting` | sorted set | waiter id → expiry (a dead waiter drops out) |
//! | `outbound:v1:conn:{ID}:ticket` | string | the ticket counter |
//! | `outbound:v1:rate:{ID}` | string | the GCRA's theoretical arrival time (µs, Redis time) |
//!
//! Every key expires on its own when unused.

mod gcra;
mod lease;
mod rate;
#[cfg(feature = "shared-limits")]
mod redis;
mod settings;
mod slots;

pub use gcra::LocalRate;
pub use lease::ConnectionLease;
pub use rate::{Rate, SharedRate};
#[cfg(feature = "shared-limits")]
pub use redis::SharedLimits;
pub(crate) use settings::LimitsUrl;
pub use settings::{
    account_id, redact_url, FailPolicy, DEFAULT_LEASE, DEFAULT_WAIT, KEY_PREFIX, MAX_SLOT_WAIT,
};
pub use slots::{ConnectionSlots, LocalSlots};
