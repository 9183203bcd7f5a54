//! Shared by the relay tests (`relay_*.rs` here, and `relay_clients.rs` in
//! outbound-live-tests, which includes this file): a **test double** of the spool that keeps
//! messages in memory and can be told to fail, a small scripted SMTP client, a self-signed
//! certificate, and a relay started on a loopback port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbound::relay::{
    add_user, AuthLimits, Envelope, Limits, MessageFacts, QueueId, RelayBuilder, RelayHandle,
    RelayServer, Reply, SenderPattern, Spool, SpoolError, SpoolWriter,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A message the test double kept.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: QueueId,
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
    pub facts: MessageFacts,
    /// The largest single write the session made.
    pub largest_write: usize,
    pub writes: usize,
}

impl Stored {
    /// The bytes as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The client's message: what follows the fields the relay added in front (its
    /// `Received:` and, when it added them, `Message-ID:` and `Date:`).
    pub fn client_bytes(&self) -> &[u8] {
        let mut rest = &self.bytes[..];
        // Received: three lines.
        for _ in 0..3 {
            let lf = rest
                .iter()
                .position(|&b| b == b'\n')
                .expect("Received line");
            rest = &rest[lf + 1..];
        }
        for (added, name) in [
            (self.facts.added_message_id, &b"Message-ID: "[..]),
            (self.facts.added_date, b"Date: "),
        ] {
            if added {
                assert!(
                    rest.starts_with(name),
                    "expected {:?}",
                    String::from_utf8_lossy(name)
                );
                let lf = rest.iter().position(|&b| b == b'\n').expect("added line");
                rest = &rest[lf + 1..];
            }
        }
        rest
    }
}

/// How the test double fails, when told to.
#[derive(Debug, Clone, Default)]
pub enum Failure {
    #[default]
    None,
    /// `open` says the disk is full.
    OpenFull,
    /// `open` says storage is unavailable.
    OpenUnavailable,
    /// `write` says the disk is full once this many bytes were written.
    WriteFullAfter(usize),
    /// `commit` fails (e.g. the fsync failed).
    CommitUnavailable,
    /// `commit` answers with this reply (a `direct`-mode verdict).
    CommitRefused(Reply),
}

/// The test double of the spool: keeps every committed message in memory.
#[derive(Default)]
pub struct TestSpool {
    pub stored: Mutex<Vec<Stored>>,
    pub failure: Mutex<Failure>,
    pub opened: AtomicUsize,
    pub aborted: AtomicUsize,
    next: AtomicU64,
}

impl TestSpool {
    pub fn new() -> Arc<Self> {
        Arc::new(TestSpool::default())
    }

    pub fn fail(&self, failure: Failure) {
        *self.failure.lock().unwrap() = failure;
    }

    pub fn messages(&self) -> Vec<Stored> {
        self.stored.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.stored.lock().unwrap().len()
    }

    /// Waits until `n` messages were kept (clients that answer before the test looks).
    pub async fn wait_for(&self, n: usize) -> Vec<Stored> {
        for _ in 0..500 {
            if self.count() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.messages()
    }
}

struct TestWriter {
    spool: Arc<TestSpool>,
    id: QueueId,
    envelope: Envelope,
    bytes: Vec<u8>,
    largest_write: usize,
    writes: usize,
}

/// The spool is shared through an `Arc` the tests keep too.
pub struct SharedSpool(pub Arc<TestSpool>);

#[async_trait::async_trait]
impl Spool for SharedSpool {
    async fn open(&self, envelope: &Envelope) -> Result<Box<dyn SpoolWriter>, SpoolError> {
        let spool = self.0.clone();
        spool.opened.fetch_add(1, Ordering::SeqCst);
        match &*spool.failure.lock().unwrap() {
            Failure::OpenFull => return Err(SpoolError::Full("test: disk full".into())),
            Failure::OpenUnavailable => {
                return Err(SpoolError::Unavailable("test: read-only".into()))
            }
            _ => {}
        }
        let n = spool.next.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Box::new(TestWriter {
            id: QueueId::new(format!("T{n:05}")),
            spool,
            envelope: envelope.clone(),
            bytes: Vec::new(),
            largest_write: 0,
            writes: 0,
        }))
    }
}

#[async_trait::async_trait]
impl SpoolWriter for TestWriter {
    fn id(&self) -> &QueueId {
        &self.id
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        if let Failure::WriteFullAfter(n) = &*self.spool.failure.lock().unwrap() {
            if self.bytes.len() + chunk.len() > *n {
                return Err(SpoolError::Full("test: disk full".into()));
            }
        }
        self.bytes.extend_from_slice(chunk);
        self.largest_write = self.largest_write.max(chunk.len());
        self.writes += 1;
        Ok(())
    }

    async fn commit(self: Box<Self>, facts: &MessageFacts) -> Result<QueueId, SpoolError> {
        match &*self.spool.failure.lock().unwrap() {
            Failure::CommitUnavailable => {
                return Err(SpoolError::Unavailable("test: fsync failed".into()))
            }
            Failure::CommitRefused(reply) => return Err(SpoolError::Refused(reply.clone())),
            _ => {}
        }
        assert_eq!(facts.size, self.bytes.len() as u64, "facts.size");
        let stored = Stored {
            id: self.id.clone(),
            envelope: self.envelope,
            bytes: self.bytes,
            facts: facts.clone(),
            largest_write: self.largest_write,
            writes: self.writes,
        };
        self.spool.stored.lock().unwrap().push(stored);
        Ok(self.id)
    }

    async fn abort(self: Box<Self>) {
        self.spool.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

/// Limits for tests: short AUTH delays, the rest as by default.
pub fn test_limits() -> Limits {
    Limits {
        auth: AuthLimits {
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(80),
            ..AuthLimits::default()
        },
        ..Limits::default()
    }
}

/// A relay on 127.0.0.1 (an ephemeral port), running until dropped.
pub struct Relay {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub spool: Arc<TestSpool>,
    pub server: Option<RelayServer>,
    handle: Option<RelayHandle>,
}

impl Relay {
    /// Binds a relay set up by `setup` (listening on 127.0.0.1:0, and on what `setup`
    /// adds), runs it, and returns it.
    pub async fn start(setup: impl FnOnce(RelayBuilder) -> RelayBuilder) -> Relay {
        let relay = Relay::bind(setup).await;
        relay.run()
    }

    /// Binds without running (for `serve_connection`).
    pub async fn bind(setup: impl FnOnce(RelayBuilder) -> RelayBuilder) -> Relay {
        let spool = TestSpool::new();
        let builder = RelayServer::builder(Arc::new(SharedSpool(spool.clone())))
            .listen("127.0.0.1:0".parse().unwrap())
            .hostname("relay.test")
            .limits(test_limits())
            .shutdown_grace(Duration::from_secs(2));
        let builder = setup(builder);
        let server = builder.bind().await.expect("relay binds");
        Relay {
            addr: *server.plain_addrs().first().expect("a plain listener"),
            tls_addr: server.tls_addrs().first().copied(),
            spool,
            server: Some(server),
            handle: None,
        }
    }

    fn run(mut self) -> Relay {
        let server = self.server.take().expect("not running yet");
        self.handle = Some(server.spawn());
        self
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// Writes a users file with these users (`(name, password, sender patterns)`).
pub fn users_file(dir: &Path, users: &[(&str, &str, &[&str])]) -> PathBuf {
    let path = dir.join("relay-users");
    for (name, password, senders) in users {
        let senders: Vec<SenderPattern> = senders.iter().map(|s| s.parse().unwrap()).collect();
        add_user(
            &path,
            name,
            &secrecy::SecretString::from(*password),
            senders,
        )
        .unwrap();
    }
    path
}

/// A self-signed certificate for `localhost`: (cert PEM file, key PEM file, cert DER).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    certificate_for(dir, &["localhost"])
}

/// A self-signed certificate for these names (an IP address becomes an IP name).
pub fn certificate_for(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().to_vec())
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One reply as the client read it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Answer {
    /// The last line's text after the code (with the enhanced code, if any).
    pub fn text(&self) -> &str {
        self.lines
            .last()
            .map(|l| l.get(4..).unwrap_or(""))
            .unwrap_or("")
    }

    /// The enhanced status code of the last line.
    pub fn status(&self) -> &str {
        self.text().split(' ').next().unwrap_or("")
    }

    pub fn has_line(&self, text: &str) -> bool {
        self.lines.iter().any(|l| l.get(4..) == Some(text))
    }
}

/// A scripted SMTP client: sends what it is told, reads whole replies.
pub struct Client {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        Client::over(Box::new(tcp))
    }

    pub fn over(stream: Box<dyn Stream>) -> Client {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("send");
        self.stream.flush().await.expect("flush");
    }

    /// Reads one reply (all its lines); panics after 10 s or on EOF.
    pub async fn reply(&mut self) -> Answer {
        self.try_reply().await.unwrap_or_else(|| {
            panic!(
                "no reply (connection closed); unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// A reply, or `None` when the connection closed first.
    pub async fn try_reply(&mut self) -> Option<Answer> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not a reply line: {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Some(Answer { code, lines });
            }
        }
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=lf).collect();
                let text = String::from_utf8_lossy(&line);
                assert!(text.ends_with("\r\n"), "reply line without CRLF: {text:?}");
                return Some(text.trim_end_matches("\r\n").to_string());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("a reply within 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `line` with CRLF and reads the reply.
    pub async fn cmd(&mut self, line: &str) -> Answer {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Sends `line`, asserts the reply's code.
    pub async fn expect(&mut self, line: &str, code: u16) -> Answer {
        let answer = self.cmd(line).await;
        assert_eq!(
            answer.code, code,
            "{line:?} was answered {:?}",
            answer.lines
        );
        answer
    }

    /// Whether the server closed the connection (within 5 s).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Greeting and EHLO.
    pub async fn hello(&mut self) -> Answer {
        let greeting = self.reply().await;
        assert_eq!(greeting.code, 220, "{greeting:?}");
        self.expect("EHLO client.test", 250).await
    }

    /// AUTH PLAIN with an initial response.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Answer {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}")).await
    }

    /// A whole transaction through DATA; returns the reply to the end of data.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> Answer {
        self.expect(&format!("MAIL FROM:<{from}>"), 250).await;
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250).await;
        }
        self.expect("DATA", 354).await;
        self.send(dot_stuff(message)).await;
        self.send(".\r\n").await;
        self.reply().await
    }

    /// The stream, for a TLS handshake (nothing may be left unread).
    pub fn into_stream(self) -> Box<dyn Stream> {
        assert!(
            self.buf.is_empty(),
            "unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream
    }

    /// STARTTLS, trusting `root` (DER), checking the name `localhost`.
    pub async fn start_tls(mut self, root: &[u8]) -> Client {
        self.expect("STARTTLS", 220).await;
        assert!(self.buf.is_empty(), "bytes after the 220");
        let stream = tls_connect(self.stream, root).await;
        Client::over(stream)
    }
}

/// A TLS client over `stream`, trusting only `root`.
pub async fn tls_connect(stream: Box<dyn Stream>, root: &[u8]) -> Box<dyn Stream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    Box::new(
        connector
            .connect(name, stream)
            .await
            .expect("TLS handshake"),
    )
}

/// Normalises `message` to CRLF and dot-stuffs it (what a client does before the final dot).
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::new();
    for line in message.replace("\r\n", "\n").split_inclusive('\n') {
        let line = line.trim_end_matches('\n');
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// A simple message.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n{body}\r\n"
    )
}

/// A non-loopback client address for `serve_connection` tests.
pub fn remote(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

/// Runs one session of `relay` over an in-memory stream as if from `client`; returns the
/// client end.
pub fn connect_as(relay: &Arc<RelayServer>, client: SocketAddr, implicit_tls: bool) -> Client {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let relay = relay.clone();
    tokio::spawn(async move { relay.serve_connection(theirs, client, implicit_tls).await });
    Client::over(Box::new(ours))
}
