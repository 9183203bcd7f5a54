#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Self-signed server certificates made the way `openssl req -x509` makes them (CA:TRUE),
//! given as the CA file: trusted as themselves (pinned), still checked for name and dates.
//! Python's smtplib and swaks accept such a certificate with the same file; before this,
//! Outbound refused it with `Other(OtherError(CaUsedAsEndEntity))`.
//!
//! The server is an in-process implicit-TLS SMTP responder on loopback (rustls), so the
//! certificates can be anything the test needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::{ErrorKind, Transport};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct SelfSigned {
    der: CertificateDer<'static>,
    pem: String,
    key: PrivateKeyDer<'static>,
}

fn self_signed(names: &[&str], not_after_year: i32) -> SelfSigned {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained); // what `openssl req -x509` does
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    SelfSigned {
        der: cert.der().clone(),
        pem: cert.pem(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// Serves implicit-TLS SMTP with `cert` until the test ends: greeting, EHLO, QUIT.
async fn serve(cert: &SelfSigned) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // the client refused the certificate
                };
                let (r, mut w) = tokio::io::split(tls);
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 pinned.test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250 pinned.test\r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"502 not here\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                    if line.starts_with("QUIT") {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn ca_file(dir: &tempfile::TempDir, cert: &SelfSigned) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &cert.pem).unwrap();
    path
}

async fn verify(host: &str, port: u16, ca: &PathBuf) -> Result<(), outbound::Error> {
    SmtpTransport::builder(host)
        .port(port)
        .tls(TlsMode::Implicit)
        .ca_file(ca)
        .timeout(Duration::from_secs(5))
        .build()?
        .verify()
        .await
}

fn assert_a_sentence(err: &outbound::Error) {
    let text = err.to_string();
    for debug in [
        "CertificateError",
        "OtherError",
        "Other(",
        "InvalidCertificate(",
    ] {
        assert!(
            !text.contains(debug),
            "a Rust Debug dump, not a sentence: {text}"
        );
    }
}

#[tokio::test]
async fn a_self_signed_ca_certificate_given_as_the_ca_file_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(&["localhost", "127.0.0.1"], 2040);
    let port = serve(&cert).await;
    let ca = ca_file(&dir, &cert);
    verify("127.0.0.1", port, &ca).await.unwrap();
    verify("localhost", port, &ca).await.unwrap();
}

#[tokio::test]
async fn another_self_signed_certificate_is_still_refused_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let served = self_signed(&["localhost", "127.0.0.1"], 2040);
    let given = self_signed(&["localhost", "127.0.0.1"], 2040);
    let port = serve(&served).await;
    let err = verify("127.0.0.1", port, &ca_file(&dir, &given))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("ca_file"), "{err}");
    assert_a_sentence(&err);
}

#[tokio::test]
async fn a_pinned_certificate_is_still_checked_for_its_name_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let expired = self_signed(&["localhost", "127.0.0.1"], 2021);
    let port = serve(&expired).await;
    let err = verify("127.0.0.1", port, &ca_file(&dir, &expired))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert_a_sentence(&err);

    let dir = tempfile::tempdir().unwrap();
    let other_name = self_signed(&["mail.other.example"], 2040);
    let port = serve(&other_name).await;
    let err = verify("127.0.0.1", port, &ca_file(&dir, &other_name))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("not valid for the name"), "{err}");
    assert_a_sentence(&err);
}
