//! The relay's TLS identity: a PEM certificate chain and key, for STARTTLS and the
//! implicit-TLS listener (TLS 1.2 and 1.3, rustls with ring, no client certificates).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// Reads `cert` (the chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1) and makes the
/// acceptor. Errors name the file and say what is wrong (never the key's bytes).
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::config_for(
                "tls_cert",
                format!(
                    "`tls_cert` {}: not a readable PEM certificate chain: {e}",
                    cert.display()
                ),
            )
        })?;
    if chain.is_empty() {
        return Err(Error::config_for(
            "tls_cert",
            format!("`tls_cert` {} holds no certificate", cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::config_for(
            "tls_key",
            format!(
                "`tls_key` {}: not a readable PEM private key: {e}",
                key.display()
            ),
        )
    })?;
    acceptor_from_der(chain, key)
}

/// The acceptor for a chain and key already in memory (tests; a caller with its own store).
pub(crate) fn acceptor_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, Error> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config_for("tls_cert", format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                Error::config_for(
                    "tls_key",
                    format!("the TLS certificate and key do not go together: {e}"),
                )
            })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
