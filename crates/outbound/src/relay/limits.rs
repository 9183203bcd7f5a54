//! What one client may ask of the relay: message size, recipients, connections, line lengths,
//! how long each phase may wait (RFC 5321 section 4.5.3), and how failed AUTH attempts are
//! slowed and then locked out per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The relay's limits. [`Limits::default`] holds the values below; every field may be changed.
///
/// ```
/// use std::time::Duration;
/// use outbound::relay::Limits;
/// let limits = Limits {
///     max_message_size: 10 * 1024 * 1024,
///     command_timeout: Duration::from_secs(60),
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_recipients, 1000);
/// ```
#[derive(Debug, Clone)]
pub struct Limits {
    /// The SIZE limit in octets, announced in EHLO (RFC 1870): a larger `SIZE=` in MAIL, or
    /// a larger message, is refused with `552 5.3.4`. Default 35 MiB (Exchange Online's
    /// default for a message).
    pub max_message_size: u64,
    /// Recipients per message; one more is answered `452 4.5.3` (the client sends the rest in
    /// another transaction, RFC 5321 section 4.5.3.1.10). Default 1000.
    pub max_recipients: usize,
    /// Connections open at once; one more is answered `421 4.7.0` and closed. Default 100.
    pub max_connections: usize,
    /// A command line's length, CRLF included; a longer one is answered `500 5.5.2`. RFC 5321
    /// section 4.5.3.1.4 says at least 512; default 2048 (Postfix's `line_length_limit`).
    pub max_command_line: usize,
    /// A line of an AUTH exchange, CRLF included; a longer one is answered `500 5.5.6`.
    /// Default 12288 (RFC 4954 section 4).
    pub max_auth_line: usize,
    /// A message line's length without its CRLF; a message with a longer line is refused
    /// with `550 5.6.0` after its end. Default 998 (RFC 5322 section 2.1.1).
    pub max_data_line: usize,
    /// How much of the header section is read before the relay decides which of
    /// `Message-ID` and `Date` to add; what follows it is streamed as body. Default 1 MiB.
    pub max_header_section: usize,
    /// Commands answered with an error before the connection is closed with `421 4.7.0`
    /// (Postfix's `smtpd_hard_error_limit`). Default 20.
    pub max_errors: usize,
    /// How long the relay waits for the next command (RFC 5321 section 4.5.3.2.7: at least 5
    /// minutes). Answered `421 4.4.2` when it passes. Default 5 minutes.
    pub command_timeout: Duration,
    /// How long the relay waits for more message data within DATA or a BDAT chunk (the
    /// client's own limit is 3 minutes per block, section 4.5.3.2.5). Default 5 minutes.
    pub data_timeout: Duration,
    /// How long a TLS handshake may take (STARTTLS or the implicit-TLS listener). Default 60 s.
    pub tls_timeout: Duration,
    /// How failed AUTH attempts are slowed and locked out.
    pub auth: AuthLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 1000,
            max_connections: 100,
            max_command_line: 2048,
            max_auth_line: 12288,
            max_data_line: 998,
            max_header_section: 1024 * 1024,
            max_errors: 20,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            tls_timeout: Duration::from_secs(60),
            auth: AuthLimits::default(),
        }
    }
}

/// Failed AUTH: each failure from an address within `window` is answered after a delay that
/// doubles from `first_delay` up to `max_delay`; the `lock_after`th closes the connection with
/// `421 4.7.0`, and for `lock_for` every AUTH from that address is answered `454 4.7.0`
/// without checking the password. Other clients, and that address's clients that need no
/// AUTH (an allowed network), are not affected. Loopback clients are counted per address
/// *and user name*: the programs of one host share 127.0.0.1, and one with a stale password
/// must not lock the others out.
#[derive(Debug, Clone)]
pub struct AuthLimits {
    /// The delay before answering the first failure. Default 1 s.
    pub first_delay: Duration,
    /// The longest delay. Default 8 s.
    pub max_delay: Duration,
    /// Failures within `window` that lock the address out. Default 5.
    pub lock_after: u32,
    /// How long failures are remembered. Default 15 minutes.
    pub window: Duration,
    /// How long a locked-out address stays locked. Default 15 minutes.
    pub lock_for: Duration,
    /// Password checks (Argon2id, about 19 MiB each) run at once; more wait. Default 4.
    pub max_concurrent_checks: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            lock_after: 5,
            window: Duration::from_secs(15 * 60),
            lock_for: Duration::from_secs(15 * 60),
            max_concurrent_checks: 4,
        }
    }
}

/// What a failed AUTH leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Answer `535` after this delay.
    Delay(Duration),
    /// This failure locked the address out: answer `421` (after the delay) and close.
    LockedOut(Duration),
}

/// Failed AUTH attempts per client address (an IPv6 address counts as its /64, which one
/// host usually holds whole; a loopback address counts per user name). Bounded: at most
/// `MAX_TRACKED` keys are remembered, the stalest forgotten first.
pub(crate) struct AuthFailures {
    limits: AuthLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// What failures are counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    net: IpAddr,
    /// The user name tried, for loopback clients only (at most 256 octets of it).
    name: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

const MAX_TRACKED: usize = 10_000;

impl AuthFailures {
    pub(crate) fn new(limits: AuthLimits) -> Self {
        AuthFailures {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `ip` (trying `name`) is locked out now.
    pub(crate) fn is_locked(&self, ip: IpAddr, name: &[u8]) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&key(ip, name))
            .and_then(|e| e.locked_until)
            .is_some_and(|until| until > now)
    }

    /// Records a failure from `ip` (trying `name`) and says what follows.
    pub(crate) fn failed(&self, ip: IpAddr, name: &[u8]) -> AfterFailure {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED {
            self.forget_stale(&mut entries, now);
        }
        let entry = entries.entry(key(ip, name)).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        let lock_over = entry.locked_until.is_some_and(|u| u <= now);
        if now.duration_since(entry.first) > self.limits.window || lock_over {
            *entry = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        let delay = self.delay(entry.failures);
        if entry.failures >= self.limits.lock_after.max(1) {
            entry.locked_until = Some(now + self.limits.lock_for);
            AfterFailure::LockedOut(delay)
        } else {
            AfterFailure::Delay(delay)
        }
    }

    /// A success forgets the failures counted under its key (not a lockout in force).
    pub(crate) fn succeeded(&self, ip: IpAddr, name: &[u8]) {
        let key = key(ip, name);
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|e| e.locked_until.is_none()) {
            entries.remove(&key);
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.limits
            .first_delay
            .saturating_mul(1u32 << doublings)
            .min(self.limits.max_delay)
    }

    fn forget_stale(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        entries.retain(|_, e| match e.locked_until {
            Some(until) => until > now,
            None => now.duration_since(e.first) <= self.limits.window,
        });
        if entries.len() >= MAX_TRACKED {
            // Still full of live entries: forget the oldest half rather than grow.
            let mut firsts: Vec<Instant> = entries.values().map(|e| e.first).collect();
            firsts.sort();
            if let Some(&cut) = firsts.get(firsts.len() / 2) {
                entries.retain(|_, e| e.first > cut || e.locked_until.is_some_and(|u| u > now));
            }
        }
    }
}

/// The key failures are counted under: IPv4 as is, IPv6 as its /64; with the user name on
/// loopback.
fn key(ip: IpAddr, name: &[u8]) -> Key {
    let ip = ip.to_canonical();
    let net = match ip {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    };
    let name = ip
        .is_loopback()
        .then(|| name[..name.len().min(256)].to_vec());
    Key { net, name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            lock_after: 4,
            ..AuthLimits::default()
        }
    }

    #[test]
    fn delays_grow_then_lock() {
        let f = AuthFailures::new(limits());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            f.failed(ip, b"u"),
            AfterFailure::Delay(Duration::from_millis(100))
        );
        assert_eq!(
            f.failed(ip, b"u"),
            AfterFailure::Delay(Duration::from_millis(200))
        );
        assert_eq!(
            f.failed(ip, b"u"),
            AfterFailure::Delay(Duration::from_millis(350))
        );
        assert!(!f.is_locked(ip, b"u"));
        assert_eq!(
            f.failed(ip, b"u"),
            AfterFailure::LockedOut(Duration::from_millis(350))
        );
        assert!(f.is_locked(ip, b"u"));
        assert!(!f.is_locked("192.0.2.8".parse().unwrap(), b"u"));
        // Off loopback the name does not matter.
        assert!(f.is_locked(ip, b"other"));
        // A success does not lift a lockout in force.
        f.succeeded(ip, b"u");
        assert!(f.is_locked(ip, b"u"));
    }

    #[test]
    fn success_forgets_failures() {
        let f = AuthFailures::new(limits());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        f.failed(ip, b"u");
        f.failed(ip, b"u");
        f.succeeded(ip, b"u");
        assert_eq!(
            f.failed(ip, b"u"),
            AfterFailure::Delay(Duration::from_millis(100))
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let f = AuthFailures::new(limits());
        for n in 1..=4 {
            f.failed(format!("2001:db8:1:2::{n}").parse().unwrap(), b"u");
        }
        assert!(f.is_locked("2001:db8:1:2:ffff::1".parse().unwrap(), b"u"));
        assert!(!f.is_locked("2001:db8:1:3::1".parse().unwrap(), b"u"));
        for _ in 0..4 {
            f.failed("::ffff:192.0.2.9".parse().unwrap(), b"u");
        }
        assert!(f.is_locked("192.0.2.9".parse().unwrap(), b"u"));
    }

    #[test]
    fn loopback_counts_per_user_name() {
        let f = AuthFailures::new(limits());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..4 {
            f.failed(lo, b"stale-app");
        }
        assert!(f.is_locked(lo, b"stale-app"));
        assert!(!f.is_locked(lo, b"cron"));
        assert!(!f.is_locked("::1".parse().unwrap(), b"cron"));
    }

    #[test]
    fn the_table_stays_bounded() {
        let f = AuthFailures::new(limits());
        for n in 0..(MAX_TRACKED as u32 + 50) {
            f.failed(IpAddr::V4(n.into()), b"u");
        }
        assert!(f.lock().len() <= MAX_TRACKED);
    }
}
