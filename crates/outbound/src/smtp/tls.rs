//! TLS for SMTP: the four modes, and the rustls client configuration (certificate verification
//! against the system roots plus an optional CA file, or explicitly off).
//!
//! Why it is separate: the TLS policy decides whether credentials may be sent at all, and it is
//! the part operators get wrong most often (465 vs 587, self-signed certificates). Keeping it in
//! one place keeps every decision — which roots, when to warn, how a handshake failure is
//! explained — reviewable at once. The crypto provider is `ring`, passed explicitly so the
//! process-wide default provider never matters.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::{Error, ErrorKind};

/// How the connection is protected.
///
/// ```
/// use outbound::smtp::TlsMode;
/// assert_eq!("starttls".parse::<TlsMode>()?, TlsMode::StartTls);
/// assert_eq!(TlsMode::Implicit.default_port(), 465);
/// assert_eq!(TlsMode::StartTls.default_port(), 587);
/// assert_eq!(TlsMode::None.default_port(), 25);
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is *required*: a server that does not
    /// offer it is an error, never a silent downgrade, and no credential is sent before TLS.
    StartTls,
    /// STARTTLS when the server offers it, plain otherwise. Only when asked for explicitly:
    /// anyone on the path can strip the STARTTLS offer.
    Opportunistic,
    /// No TLS at all.
    None,
}

impl TlsMode {
    /// The conventional port: 465 (implicit), 587 (starttls), 25 (opportunistic, none).
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::Opportunistic | TlsMode::None => 25,
        }
    }

    /// The lower-case name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::Opportunistic => "opportunistic",
            TlsMode::None => "none",
        }
    }

    /// Whether this mode may use TLS (and so needs a client configuration).
    pub(crate) fn uses_tls(self) -> bool {
        !matches!(self, TlsMode::None)
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TlsMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "implicit" => Ok(TlsMode::Implicit),
            "starttls" => Ok(TlsMode::StartTls),
            "opportunistic" => Ok(TlsMode::Opportunistic),
            "none" => Ok(TlsMode::None),
            _ => Err(Error::config(format!(
                "TLS mode `{s}` is not known; expected one of: implicit, starttls, \
                 opportunistic, none"
            ))),
        }
    }
}

/// Reads every certificate from a PEM file. `label` names the setting in errors.
pub(crate) fn load_ca_file(
    path: &Path,
    label: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "{label}: cannot read the CA file `{}`: {e}",
            path.display()
        ))
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Error::config(format!(
                "{label}: `{}` is not a valid PEM file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "{label}: `{}` contains no `BEGIN CERTIFICATE` block; expected PEM CA certificates",
            path.display()
        )));
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    crate::net::crypto_provider()
}

/// The rustls client configuration: system roots (plus `extra_roots`) verified by webpki, or
/// no verification at all when `verify` is false.
pub(crate) fn client_config(
    verify: bool,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Tls, format!("cannot set up TLS: {e}")))?;
    // The CA file's certificates also pin themselves: a self-signed server certificate given
    // there is trusted as itself (see `pinning`).
    let pinned = extra_roots.clone();
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let mut roots: RootCertStore = (*crate::net::system_roots()).clone();
        let (extra_added, _) = roots.add_parsable_certificates(extra_roots);
        tracing::debug!(
            extra = extra_added,
            "trusted CA certificates from the CA file"
        );
        if roots.is_empty() {
            tracing::warn!(
                "no trusted CA certificates found (the system store is empty and no CA file \
                 is set): every TLS server will be refused"
            );
            Arc::new(FixedVerdict {
                provider: provider.clone(),
                accept: false,
            })
        } else {
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::new(ErrorKind::Tls, format!("cannot set up TLS: {e}")))?;
            if pinned.is_empty() {
                chain
            } else {
                Arc::new(super::pinning::PinnedOrChain::new(chain, pinned))
            }
        }
    } else {
        Arc::new(FixedVerdict {
            provider: provider.clone(),
            accept: true,
        })
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name to verify the certificate against (a DNS name or an IP address).
pub(crate) fn server_name(host: &str, label: &str) -> Result<ServerName<'static>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| {
        Error::config(format!(
            "{label}: `{host}` is not a valid host name or IP address for TLS: {e}"
        ))
    })
}

/// A verifier whose answer is fixed: accept every certificate (verification explicitly turned
/// off) or refuse every one (no trusted roots at all). Handshake signatures are still checked.
#[derive(Debug)]
struct FixedVerdict {
    provider: Arc<CryptoProvider>,
    accept: bool,
}

impl ServerCertVerifier for FixedVerdict {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.accept {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate error as words (rustls' `Display`, never a `Debug` dump).
fn sentence(e: &CertificateError) -> String {
    let text = rustls::Error::InvalidCertificate(e.clone()).to_string();
    text.strip_prefix("invalid peer certificate: ")
        .unwrap_or(&text)
        .to_string()
}

/// Explains a failed handshake in an operator's terms.
pub(crate) fn handshake_error(err: std::io::Error, host: &str, port: u16, implicit: bool) -> Error {
    let rustls_err = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    let message = match &rustls_err {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "the certificate of {host}:{port} is not trusted (unknown issuer); add its CA with \
             `ca_file`, or fix the system trust store"
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
        | Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            ..
        })) => format!("the certificate of {host}:{port} is not valid for the name `{host}`"),
        Some(rustls::Error::InvalidCertificate(CertificateError::Expired))
        | Some(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
            format!("the certificate of {host}:{port} has expired; the server needs a new one")
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidYet))
        | Some(rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
            ..
        })) => format!(
            "the certificate of {host}:{port} is not valid yet; check this machine's clock, or \
             the certificate's start date"
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => format!(
            "the certificate of {host}:{port} names a trusted issuer but its signature does not \
             verify: a different certificate with the same issuer name is trusted (the system \
             store may hold a same-named one, such as Debian's snakeoil); put the server's own \
             CA, or its exact certificate, in `ca_file`"
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {
            format!("the certificate of {host}:{port} has been revoked")
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            format!(
                "the certificate of {host}:{port} is a CA certificate (CA:TRUE) used as the \
                 server's own, and it is not the one in `ca_file`; put the server's exact \
                 certificate in `ca_file` to pin it"
            )
        }
        Some(rustls::Error::InvalidCertificate(e)) => format!(
            "the certificate of {host}:{port} was refused ({}); check `ca_file` and the \
             server's certificate",
            sentence(e)
        ),
        Some(
            e @ (rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }),
        ) if implicit => {
            format!(
                "TLS handshake with {host}:{port} failed ({e}); does the port really speak \
                 implicit TLS? Port 587 and 25 use STARTTLS (tls=starttls)"
            )
        }
        Some(e) => format!("TLS handshake with {host}:{port} failed: {e}"),
        None => format!("TLS handshake with {host}:{port} failed: {err}"),
    };
    // A connection reset during the handshake is a network problem, not a TLS policy one.
    let kind = if rustls_err.is_none()
        && matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ) {
        ErrorKind::Network
    } else {
        ErrorKind::Tls
    };
    let names_ca_file = matches!(rustls_err, Some(rustls::Error::InvalidCertificate(_)));
    let out = Error::new(kind, message).with_source(err);
    if names_ca_file {
        out.for_setting("ca_file")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        for (s, m) in [
            ("implicit", TlsMode::Implicit),
            ("STARTTLS", TlsMode::StartTls),
            ("opportunistic", TlsMode::Opportunistic),
            ("none", TlsMode::None),
        ] {
            assert_eq!(s.parse::<TlsMode>().unwrap(), m);
            assert_eq!(m.as_str().parse::<TlsMode>().unwrap(), m);
        }
        let err = "maybe".parse::<TlsMode>().unwrap_err();
        assert!(err
            .to_string()
            .contains("implicit, starttls, opportunistic, none"));
    }

    #[test]
    fn builds_verifying_and_insecure_configs() {
        assert!(client_config(true, Vec::new()).is_ok());
        assert!(client_config(false, Vec::new()).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1", "x").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]", "x").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("smtp.example.com", "x").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad host!", "`host`").is_err());
    }

    #[test]
    fn ca_file_errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_ca_file(&missing, "`ca_file`").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`ca_file`"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let err = load_ca_file(&empty, "ca_file").unwrap_err();
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }
}
