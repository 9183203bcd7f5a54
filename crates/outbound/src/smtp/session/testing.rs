//! Scripted servers for tests: a session opened over an in-memory pipe, and the server's end
//! of it, which reads what the client wrote and says what the script says.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::opening::Opening;
use super::{ConnectParams, Session, Timeouts};
use crate::message::Envelope;
use crate::smtp::auth::Credentials;
use crate::smtp::tls::TlsMode;
use crate::smtp::wire::Counters;
use crate::Error;

pub(crate) fn params(
    pipelining: bool,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> Arc<ConnectParams> {
    Arc::new(ConnectParams {
        host: "mx.test".into(),
        port: 25,
        tls_mode: TlsMode::None,
        tls: None,
        credentials,
        mechanism: None,
        ehlo_name: Some("client.example".into()),
        timeouts: Timeouts::all(timeout),
        pipelining,
        chunking: true,
    })
}

/// A scripted server: for each expected client line (prefix), the reply to send. A reply of
/// `None` means "read the line but stay silent".
pub(crate) struct Script {
    pub(crate) server: BufReader<DuplexStream>,
    pub(crate) seen: Vec<String>,
}

impl Script {
    pub(crate) async fn say(&mut self, text: &str) {
        self.server
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .unwrap();
    }
    pub(crate) async fn line(&mut self) -> String {
        let mut l = String::new();
        self.server.read_line(&mut l).await.unwrap();
        let l = l.trim_end().to_string();
        self.seen.push(l.clone());
        l
    }
    pub(crate) async fn expect(&mut self, prefix: &str) -> String {
        let l = self.line().await;
        assert!(l.starts_with(prefix), "expected {prefix:?}, got {l:?}");
        l
    }
    pub(crate) async fn read_data(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            self.server.read_until(b'\n', &mut l).await.unwrap();
            if l == b".\r\n" {
                return out;
            }
            out.extend_from_slice(&l);
        }
    }
}

pub(crate) async fn open(
    p: Arc<ConnectParams>,
    ehlo: &str,
) -> (Result<Session, Error>, Script, Arc<Counters>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let counters = Arc::new(Counters::default());
    let session = Opening::over(Box::new(client), None, p, counters.clone(), 1);
    let mut script = Script {
        server: BufReader::new(server),
        seen: Vec::new(),
    };
    let ehlo = ehlo.to_string();
    let server_side = async {
        script.say("220 mx.test ESMTP\r\n").await;
        script.expect("EHLO client.example").await;
        script.say(&ehlo).await;
    };
    let (session, ()) = tokio::join!(session.handshake_and_login(), server_side);
    (session, script, counters)
}

pub(crate) fn envelope(to: &[&str]) -> Envelope {
    Envelope {
        from: "a@example.com".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        smtputf8: false,
    }
}

pub(crate) const EHLO_PIPE: &str =
    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";

impl Script {
    /// Reads `n` bytes (a `BDAT` chunk).
    pub(crate) async fn read_chunk(&mut self, n: usize) -> Vec<u8> {
        let mut chunk = vec![0u8; n];
        self.server.read_exact(&mut chunk).await.unwrap();
        chunk
    }

    /// Closes the server's end: the client's next read finds the connection closed.
    pub(crate) fn hang_up(self) {
        drop(self.server);
    }
}

/// A message given as its bytes (leaked: it outlives the test's futures, which borrow it).
pub(crate) fn body(bytes: &[u8]) -> &'static crate::message::RenderedMessage {
    Box::leak(Box::new(crate::message::RenderedMessage::from_bytes(
        bytes.to_vec(),
    )))
}
