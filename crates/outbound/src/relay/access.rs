//! Who may relay, and who is offered AUTH: the relay is never open.
//!
//! - An authenticated user may relay.
//! - A client inside an allowed network (`--allow-from`) may relay without AUTH.
//! - A loopback client may relay without AUTH only when there is no users file; with one,
//!   loopback clients authenticate too, unless an allowed network names them.
//! - AUTH is offered after TLS, or to loopback clients (whose traffic never leaves the host).
//! - A listener on a non-loopback address with neither users nor allowed networks would
//!   relay for nobody but local programs by accident of routing, or for everyone if that
//!   rule were loosened: it refuses to start ([`check_listener`]).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::Error;

/// Whether a client may relay, and if not, why (which decides the reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    /// It may.
    Allowed,
    /// It may after AUTH, which it can do now.
    NeedsAuth,
    /// It may after AUTH, which needs STARTTLS first.
    NeedsTls,
    /// It may not: no users file to authenticate against, and not an allowed network.
    Denied,
}

/// The relay's access rules.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    allow_from: Vec<IpNet>,
    has_users: bool,
}

impl AccessPolicy {
    /// Rules for a relay with (or without) a users file and these allowed networks.
    ///
    /// ```
    /// use outbound::relay::AccessPolicy;
    /// let policy = AccessPolicy::new(true, vec!["10.0.0.0/8".parse().unwrap()]);
    /// assert!(policy.may_relay_unauthenticated("10.1.2.3".parse().unwrap()));
    /// assert!(!policy.may_relay_unauthenticated("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn new(has_users: bool, allow_from: Vec<IpNet>) -> Self {
        AccessPolicy {
            allow_from: allow_from.into_iter().map(|n| n.trunc()).collect(),
            has_users,
        }
    }

    /// Whether a users file is configured (AUTH exists at all).
    pub fn has_users(&self) -> bool {
        self.has_users
    }

    /// Whether `client` may relay without authenticating.
    pub fn may_relay_unauthenticated(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.allow_from.iter().any(|net| net.contains(&client))
            || (!self.has_users && client.is_loopback())
    }

    /// Whether AUTH is offered to `client` on a connection with (or without) TLS.
    pub fn offers_auth(&self, client: IpAddr, tls: bool) -> bool {
        self.has_users && (tls || client.to_canonical().is_loopback())
    }

    /// What a client may do now, given whether it authenticated and has TLS.
    pub(crate) fn relay(&self, client: IpAddr, authenticated: bool, tls: bool) -> Relay {
        if authenticated || self.may_relay_unauthenticated(client) {
            Relay::Allowed
        } else if self.offers_auth(client, tls) {
            Relay::NeedsAuth
        } else if self.has_users {
            Relay::NeedsTls
        } else {
            Relay::Denied
        }
    }
}

/// Refuses a listener that would serve non-loopback clients with neither a users file nor an
/// allowed network: nobody but loopback clients could relay through it, and they are not
/// reachable there, so it is a mistake; the error says what to add. (The CLI exits 78.)
///
/// ```
/// use outbound::relay::check_listener;
/// assert!(check_listener("127.0.0.1:2525".parse().unwrap(), false, &[]).is_ok());
/// let err = check_listener("0.0.0.0:2525".parse().unwrap(), false, &[]).unwrap_err();
/// assert_eq!(err.kind(), outbound::ErrorKind::Config);
/// ```
pub fn check_listener(
    addr: SocketAddr,
    has_users: bool,
    allow_from: &[IpNet],
) -> Result<(), Error> {
    if addr.ip().to_canonical().is_loopback() || has_users || !allow_from.is_empty() {
        return Ok(());
    }
    Err(Error::config_for(
        "listen",
        format!(
            "`listen` is {addr}, not a loopback address, and the relay has neither a users \
             file nor an allowed network: no client there could relay through it (it is \
             never an open relay). Give a users file so clients authenticate, or the \
             networks that may relay without AUTH, or listen on a loopback address"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_users_only_loopback_relays() {
        let p = AccessPolicy::new(false, vec![]);
        assert_eq!(p.relay(ip("127.0.0.1"), false, false), Relay::Allowed);
        assert_eq!(p.relay(ip("::1"), false, false), Relay::Allowed);
        assert_eq!(
            p.relay(ip("::ffff:127.0.0.1"), false, false),
            Relay::Allowed
        );
        assert_eq!(p.relay(ip("192.0.2.1"), false, true), Relay::Denied);
        assert!(!p.offers_auth(ip("127.0.0.1"), true));
    }

    #[test]
    fn with_users_loopback_authenticates_too() {
        let p = AccessPolicy::new(true, vec![]);
        assert_eq!(p.relay(ip("127.0.0.1"), false, false), Relay::NeedsAuth);
        assert_eq!(p.relay(ip("192.0.2.1"), false, false), Relay::NeedsTls);
        assert_eq!(p.relay(ip("192.0.2.1"), false, true), Relay::NeedsAuth);
        assert_eq!(p.relay(ip("192.0.2.1"), true, true), Relay::Allowed);
    }

    #[test]
    fn allowed_networks_relay_without_auth() {
        let p = AccessPolicy::new(
            true,
            vec![
                "192.0.2.0/24".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
        );
        assert_eq!(p.relay(ip("192.0.2.200"), false, false), Relay::Allowed);
        assert_eq!(
            p.relay(ip("::ffff:192.0.2.200"), false, false),
            Relay::Allowed
        );
        assert_eq!(p.relay(ip("127.0.0.1"), false, false), Relay::Allowed);
        assert_eq!(p.relay(ip("198.51.100.1"), false, true), Relay::NeedsAuth);
    }

    #[test]
    fn listener_check() {
        assert!(check_listener("[::1]:25".parse().unwrap(), false, &[]).is_ok());
        assert!(check_listener("0.0.0.0:25".parse().unwrap(), true, &[]).is_ok());
        assert!(check_listener(
            "0.0.0.0:25".parse().unwrap(),
            false,
            &["10.0.0.0/8".parse().unwrap()]
        )
        .is_ok());
        let e = check_listener("[::]:25".parse().unwrap(), false, &[]).unwrap_err();
        assert!(e.to_string().contains("users file"), "{e}");
    }
}
