//! The trust every TLS client in Outbound shares: the system's root certificates (loaded once
//! per process, not once per transport), the crypto provider, and the HTTPS configuration.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;

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

#[cfg(feature = "http-client")]
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
