//! What every network client in Outbound shares: the system's trusted root certificates
//! (loaded once per process, not once per transport) and the rule for endpoint URLs.
//!
//! SMTP, the HTTP providers and the OAuth2 token requests all verify servers against the same
//! roots and refuse the same unsafe URLs, so the policy lives here once.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;

use crate::Error;

/// The crypto provider of every TLS client (ring: small, builds everywhere).
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted root certificates, read on first use. An empty store is logged once,
/// with the fix; callers decide what an empty store means for them.
pub(crate) fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for err in &loaded.errors {
                tracing::debug!(error = %err, "could not load a system root certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            if added == 0 {
                tracing::warn!(
                    "no system root certificates found: TLS servers cannot be verified \
                     (install the ca-certificates package, or give a CA file)"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

/// A TLS client configuration for HTTPS (reqwest) against the system roots, offering
/// `alpn` protocols.
pub(crate) fn https_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let roots = (*system_roots()).clone();
    let mut config = match rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // ring supports the default versions; this arm only keeps the code panic-free.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Whether the URL's host is `localhost` or a loopback address.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses an endpoint URL that will carry secrets (API keys, client secrets, tokens):
/// `https`, or plain `http` to loopback only (test servers); a host; no user info; no
/// fragment. `what` names the setting in errors (e.g. `RESEND_API_URL`).
pub(crate) fn parse_endpoint_url(raw: &str, what: &str) -> Result<url::Url, Error> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| {
        Error::config(format!(
            "{what} is `{raw}`, not a valid URL ({e}); expected e.g. `https://api.example.com`"
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(format!(
                "{what} is `{raw}`: plain http would send secrets unencrypted; use https (http \
                 is allowed only for loopback test servers)"
            )))
        }
        other => {
            return Err(Error::config(format!(
                "{what} is `{raw}`: scheme `{other}` is not supported; expected https"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("{what} is `{raw}`: it has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "{what} must not contain user info (credentials go in their own settings)"
        )));
    }
    if url.fragment().is_some() {
        return Err(Error::config(format!(
            "{what} is `{raw}`: it must not have a #fragment"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        for ok in [
            "https://api.resend.com",
            "http://127.0.0.1:8025",
            "http://[::1]:8089/token",
            "http://localhost:1",
        ] {
            assert!(parse_endpoint_url(ok, "X").is_ok(), "{ok}");
        }
        let err = parse_endpoint_url("http://api.resend.com", "RESEND_API_URL").unwrap_err();
        assert!(err.to_string().contains("RESEND_API_URL"), "{err}");
        assert!(err.to_string().contains("use https"), "{err}");
        for bad in ["ftp://x", "https://u:p@x", "not a url", "https://x/#f"] {
            assert!(parse_endpoint_url(bad, "X").is_err(), "{bad}");
        }
    }
}
