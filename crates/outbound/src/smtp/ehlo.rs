//! The name the client gives in `EHLO`.
//!
//! Servers check it: Postfix's `reject_non_fqdn_helo_hostname` or `reject_invalid_helo_hostname`
//! refuse a bare word or an empty name, and some providers score it. So the rule is:
//! 1. the configured name (the builder's `local_hostname`) when one is set;
//! 2. else this host's name, when it is a fully qualified domain name (`web1.example.com`);
//!    a single label such as `buildbox` or a container id is not, and strict servers refuse it;
//! 3. else an address literal of the local end of the connection (`[192.0.2.7]`,
//!    `[IPv6:2001:db8::1]`), which RFC 5321 section 4.1.3 allows and every server accepts.
//!
//! An empty name is never sent.

use std::net::{IpAddr, SocketAddr};

/// Whether `name` is a syntactically valid domain name with at least two labels (RFC 1035
/// letters, digits and hyphens; labels 1-63 octets, not starting or ending with a hyphen; the
/// whole at most 253 octets; the last label not all digits).
pub(crate) fn is_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(|l| label_ok(l))
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is acceptable as a configured EHLO name: a domain (one label is allowed: the
/// operator chose it) or an address literal.
pub(crate) fn is_valid_configured(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return inner.parse::<IpAddr>().is_ok();
    }
    let probe = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.invalid")
    };
    is_fqdn(&probe)
}

/// The address literal for `ip` (RFC 5321 section 4.1.3).
pub(crate) fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

/// The EHLO name for a connection whose local end is `local`.
pub(crate) fn choose(configured: Option<&str>, system: Option<&str>, local: SocketAddr) -> String {
    if let Some(name) = configured.map(str::trim).filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    if let Some(host) = system.map(str::trim).filter(|h| is_fqdn(h)) {
        return host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    }
    address_literal(local.ip())
}

/// This machine's host name, if the OS reports one as text.
pub(crate) fn system_hostname() -> Option<String> {
    gethostname::gethostname().into_string().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn configured_name_wins_when_non_empty() {
        assert_eq!(
            choose(
                Some("mail.app.example"),
                Some("web1.example.com"),
                local("10.0.0.5")
            ),
            "mail.app.example"
        );
        // Empty or blank is ignored, never sent.
        assert_eq!(
            choose(Some("  "), Some("web1.example.com"), local("10.0.0.5")),
            "web1.example.com"
        );
    }

    #[test]
    fn fqdn_system_name_is_used() {
        assert_eq!(
            choose(None, Some("Web1.Example.COM."), local("10.0.0.5")),
            "web1.example.com"
        );
    }

    #[test]
    fn non_fqdn_system_names_fall_back_to_an_address_literal() {
        for bad in [
            "buildbox",
            "a1b2c3d4e5f6",
            "",
            "under_score.example",
            "-x.example",
            "1.2.3.4",
        ] {
            assert_eq!(
                choose(None, Some(bad), local("127.0.0.1")),
                "[127.0.0.1]",
                "{bad:?}"
            );
        }
        assert_eq!(choose(None, None, local("::1")), "[IPv6:::1]");
        assert_eq!(choose(None, None, local("::ffff:192.0.2.7")), "[192.0.2.7]");
    }

    #[test]
    fn fqdn_rules() {
        assert!(is_fqdn("a.b"));
        assert!(is_fqdn("mail-1.example.co.uk"));
        assert!(!is_fqdn("localhost"));
        assert!(!is_fqdn("a..b"));
        assert!(!is_fqdn(&format!("{}.com", "a".repeat(64))));
        assert!(!is_fqdn("10.0.0.1"));
    }

    #[test]
    fn configured_names_are_validated() {
        assert!(is_valid_configured("mail.example.com"));
        assert!(is_valid_configured("relayhost"));
        assert!(is_valid_configured("[127.0.0.1]"));
        assert!(is_valid_configured("[IPv6:::1]"));
        assert!(!is_valid_configured("bad name"));
        assert!(!is_valid_configured("[not-an-ip]"));
        assert!(!is_valid_configured("evil\r\nRCPT"));
    }
}
