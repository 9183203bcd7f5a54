#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A TLS mode that does not match the port, against in-process servers on loopback (rustls
//! for implicit TLS), on ports other than 465 so the port number gives nothing away.
//!
//! STARTTLS (or plain text) pointed at a port that speaks implicit TLS used to wait out the
//! whole greeting timeout and fail as a retryable timeout (exit 75), so a job queue retried a
//! configuration mistake forever (issue 19, found against nodemailer's smtp-server and
//! Haraka; Postfix's 465 was caught by its port number). It is now a configuration error
//! (exit 78) within about a second: when no greeting comes, a TLS ClientHello on a second
//! connection answered in TLS proves what the port speaks. A slow or silent plain-text server
//! is still waited for as before. The reverse, implicit TLS at a plain-text port, says the
//! port likely speaks STARTTLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::{ErrorKind, Transport};
use outbound_cli::Sysexits;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// An implicit-TLS SMTP server (self-signed for `localhost`): TLS from the first byte, then
/// greeting, EHLO, QUIT. Like every TLS server it says nothing until the ClientHello.
async fn implicit_tls_server() -> u16 {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (r, mut w) = tokio::io::split(tls);
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 implicit.test ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let quit = line.starts_with("QUIT");
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250 implicit.test\r\n"
                    } else if quit {
                        b"221 bye\r\n"
                    } else {
                        b"502 not here\r\n"
                    };
                    let _ = w.write_all(reply).await;
                    if quit {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A plain-text SMTP server that greets after `delay` (`None`: never; it reads and ignores
/// everything), offering STARTTLS in its EHLO.
async fn plain_server(delay: Option<Duration>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let Some(delay) = delay else {
                    let mut sink = r;
                    let mut buf = [0u8; 1024];
                    while matches!(sink.read(&mut buf).await, Ok(n) if n > 0) {}
                    return;
                };
                tokio::time::sleep(delay).await;
                let _ = w.write_all(b"220 plain.test ESMTP ready\r\n").await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let quit = line.starts_with("QUIT");
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-plain.test\r\n250 STARTTLS\r\n"
                    } else if quit {
                        b"221 bye\r\n"
                    } else {
                        b"500 what\r\n"
                    };
                    let _ = w.write_all(reply).await;
                    if quit {
                        break;
                    }
                }
            });
        }
    });
    port
}

async fn verify(port: u16, mode: TlsMode, timeout: u64) -> (Result<(), outbound::Error>, Duration) {
    let t = SmtpTransport::builder("127.0.0.1")
        .port(port)
        .tls(mode)
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(timeout))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = t.verify().await;
    t.close().await;
    (result, started.elapsed())
}

#[tokio::test]
async fn starttls_or_plain_text_at_an_implicit_tls_port_is_a_configuration_error_at_once() {
    let port = implicit_tls_server().await;
    for mode in [TlsMode::StartTls, TlsMode::Opportunistic, TlsMode::None] {
        let (result, took) = verify(port, mode, 30).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{mode}: {err}");
        assert_eq!(err.exit_code(), 78, "{mode}");
        let text = err.to_string();
        assert!(
            text.contains("likely speaks implicit TLS"),
            "{mode}: {text}"
        );
        assert!(text.contains("`tls=implicit`"), "{mode}: {text}");
        assert_eq!(err.setting(), Some("tls"), "{mode}");
        assert!(took < Duration::from_secs(5), "{mode}: took {took:?}");
    }
}

/// The same through the configuration, as `outbound check` builds it: exit 78.
#[tokio::test]
async fn configured_from_a_dsn_it_is_exit_78() {
    let port = implicit_tls_server().await;
    let t = outbound::from_dsn(&format!("smtp://127.0.0.1:{port}?timeout=30")).unwrap();
    let started = Instant::now();
    let err = t.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.exit_code(), 78);
    assert!(err.to_string().contains("implicit TLS"), "{err}");
    // Configured by a DSN, the hint is in the DSN's words (config/vocabulary.rs).
    assert!(err.to_string().contains("smtps://"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A server that greets late is a slow server, not a TLS port: it is waited for, and the
/// second connection that asked it for TLS does not disturb the first.
#[tokio::test]
async fn a_slow_plain_text_greeting_is_still_waited_for() {
    let port = plain_server(Some(Duration::from_millis(2500))).await;
    let (result, took) = verify(port, TlsMode::Opportunistic, 10).await;
    // Opportunistic: STARTTLS is offered, so it is tried; without a TLS server behind it the
    // upgrade fails, which proves the greeting and EHLO went through.
    match result {
        Ok(()) => {}
        Err(e) => assert_ne!(e.kind(), ErrorKind::Config, "{e}"),
    }
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    let (result, _) = verify(port, TlsMode::None, 10).await;
    result.unwrap();
}

/// A server that never says anything, and answers no ClientHello either, is what it was
/// before: a timeout (temporary, exit 75), after the whole greeting timeout (6 s, so the probe
/// runs and proves nothing; a limit under 5 s is waited out without one).
#[tokio::test]
async fn a_silent_plain_text_server_still_times_out() {
    let port = plain_server(None).await;
    for timeout in [6, 2] {
        let (result, took) = verify(port, TlsMode::StartTls, timeout).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_eq!(err.exit_code(), 75);
        assert!(took >= Duration::from_secs(timeout), "{took:?}");
    }
}

/// Implicit TLS at a plain-text port: the greeting arrives where a ServerHello belongs.
#[tokio::test]
async fn implicit_tls_at_a_plain_text_port_says_it_likely_speaks_starttls() {
    let port = plain_server(Some(Duration::ZERO)).await;
    let (result, took) = verify(port, TlsMode::Implicit, 30).await;
    let err = result.unwrap_err();
    // A TLS failure (exit 69, not retried), as before; now it says what the port speaks.
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(err.exit_code(), 69);
    let text = err.to_string();
    assert!(text.contains("220 plain.test ESMTP ready"), "{text}");
    assert!(text.contains("likely speaks STARTTLS"), "{text}");
    assert!(text.contains("`tls=starttls`"), "{text}");
    assert!(text.contains("implicit TLS"), "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
