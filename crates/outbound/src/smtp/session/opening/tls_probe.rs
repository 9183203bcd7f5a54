//! What a port speaks, asked on a second connection when the first one shows a TLS mode that
//! does not fit: a port that speaks implicit TLS says nothing until it gets a ClientHello, and
//! a plain-text port greets at once where a ServerHello belongs.
//!
//! Both probes only ever *prove* something: a ClientHello answered by a TLS record proves TLS,
//! a `220` proves plain text. Silence, a refused connection or anything else proves nothing,
//! and the caller goes on as if no probe had run.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether `host:port` answers a TLS ClientHello with a TLS record (a ServerHello or an
/// alert) within `within`, connection included.
pub(super) async fn answers_tls(host: &str, port: u16, within: Duration) -> bool {
    let Some(hello) = client_hello(host) else {
        return false;
    };
    let ask = async {
        let mut tcp = TcpStream::connect((host, port)).await.ok()?;
        tcp.write_all(&hello).await.ok()?;
        let mut head = [0u8; 3];
        tcp.read_exact(&mut head).await.ok()?;
        Some(is_tls_record(&head))
    };
    matches!(tokio::time::timeout(within, ask).await, Ok(Some(true)))
}

/// The first line `host:port` sends on a new connection, when it is an SMTP reply line (three
/// digits, then a space, a hyphen or the end), within `within`.
pub(super) async fn plain_text_greeting(host: &str, port: u16, within: Duration) -> Option<String> {
    let read = async {
        let mut tcp = TcpStream::connect((host, port)).await.ok()?;
        let mut line = Vec::with_capacity(128);
        let mut buf = [0u8; 256];
        while !line.contains(&b'\n') && line.len() < 512 {
            let n = tcp.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            line.extend_from_slice(&buf[..n]);
        }
        Some(line)
    };
    let bytes = tokio::time::timeout(within, read).await.ok()??;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let is_reply = first.len() >= 3
        && first[..3].iter().all(u8::is_ascii_digit)
        && matches!(first.get(3), None | Some(b' ' | b'-' | b'\r'));
    is_reply.then(|| one_line(&String::from_utf8_lossy(first)))
}

/// Server text fit for an error message: control characters as spaces, at most 120
/// characters.
fn one_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    clean.trim().to_string()
}

/// A TLS record header: handshake (22) or alert (21), protocol version 3.x.
fn is_tls_record(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, minor, ..] if *minor <= 0x04)
}

/// The bytes of a ClientHello for `host`, made by rustls without any I/O.
fn client_hello(host: &str) -> Option<Vec<u8>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string())
        .or_else(|_| ServerName::try_from("localhost"))
        .ok()?;
    let mut conn = ClientConnection::new(probe_config()?, name).ok()?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).ok()?;
    }
    Some(hello)
}

/// A client configuration for the probe: it never gets as far as checking a certificate, so
/// it trusts nothing.
fn probe_config() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            ClientConfig::builder_with_provider(crate::net::crypto_provider())
                .with_safe_default_protocol_versions()
                .ok()
                .map(|b| {
                    Arc::new(
                        b.with_root_certificates(RootCertStore::empty())
                            .with_no_client_auth(),
                    )
                })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_a_tls_handshake_record() {
        for host in ["localhost", "127.0.0.1", "[::1]", "smtp.example.com"] {
            let hello = client_hello(host).unwrap();
            assert!(is_tls_record(&hello), "{host}");
            assert_eq!(hello[5], 1, "{host}: handshake type ClientHello");
        }
    }

    #[test]
    fn tls_records_and_smtp_replies_are_told_apart() {
        assert!(is_tls_record(&[0x16, 0x03, 0x03]));
        assert!(is_tls_record(&[0x15, 0x03, 0x01]));
        assert!(!is_tls_record(b"220"));
        assert!(!is_tls_record(&[0x16, 0x02, 0x00]));
        assert!(!is_tls_record(&[0x17, 0x03, 0x03]));
        assert!(!is_tls_record(&[0x16]));
    }

    #[test]
    fn server_text_is_one_bounded_line() {
        assert_eq!(one_line("220 a\tb\u{1b}[31m\r"), "220 a b [31m");
        assert_eq!(one_line(&"x".repeat(500)).len(), 120);
    }
}
