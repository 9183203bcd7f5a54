//! One client connection: a read buffer that commands, DATA and BDAT chunks are taken from,
//! replies held until the relay is about to wait for the client (so a pipelined group of
//! commands gets its replies in one write, RFC 2920 section 3.2), per-phase timeouts, and the
//! STARTTLS upgrade.

use std::time::Duration;

use memchr::memchr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::relay::reply::Reply;

/// A byte stream: TCP, or TLS over TCP (or, in tests, anything else).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The relay asks sessions to stop: `true` once shutting down.
pub(crate) type Shutdown = watch::Receiver<bool>;

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The client closed the connection, or it broke.
    Closed,
    /// The client said nothing for longer than the phase allows.
    TimedOut,
    /// The relay is shutting down (only while waiting for a command).
    Shutdown,
}

/// A line read from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line ended by CRLF, without its CRLF.
    Text(Vec<u8>),
    /// A line longer than the limit (read to its end and dropped).
    TooLong,
    /// A line ended by a bare LF, or holding a bare CR.
    BareNewline,
}

pub(crate) struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    write_timeout: Duration,
    /// Dropping a too-long line: everything up to the next LF goes.
    discarding: bool,
}

impl Conn {
    pub(crate) fn new(stream: Box<dyn Stream>, buffer: usize, write_timeout: Duration) -> Self {
        Conn {
            stream,
            buf: vec![0; buffer.max(4096)],
            start: 0,
            end: 0,
            out: Vec::with_capacity(512),
            write_timeout,
            discarding: false,
        }
    }

    /// Queues a reply; it goes out before the relay next waits for the client.
    pub(crate) fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Writes the queued replies.
    pub(crate) async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Closed),
            Err(_) => Err(Stop::TimedOut),
        }
    }

    /// Bytes read and not yet taken.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Takes `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Whether the client sent more than has been taken (it pipelined).
    pub(crate) fn has_pending_input(&self) -> bool {
        self.start < self.end
    }

    /// Flushes the replies, then waits for more bytes from the client.
    pub(crate) async fn fill(
        &mut self,
        timeout: Duration,
        shutdown: Option<&mut Shutdown>,
    ) -> Result<(), Stop> {
        self.flush().await?;
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Only a caller that does not take what it reads gets here; treat as a break.
            return Err(Stop::Closed);
        }
        let read = self.stream.read(&mut self.buf[self.end..]);
        let read = tokio::time::timeout(timeout, read);
        let n = match shutdown {
            Some(signal) if *signal.borrow() => return Err(Stop::Shutdown),
            Some(signal) => tokio::select! {
                r = read => r,
                // A dropped sender (no relay left to stop it) disables this branch.
                Ok(()) = signal.changed() => return Err(Stop::Shutdown),
            },
            None => read.await,
        };
        match n {
            Ok(Ok(0)) | Ok(Err(_)) => Err(Stop::Closed),
            Ok(Ok(n)) => {
                self.end += n;
                Ok(())
            }
            Err(_) => Err(Stop::TimedOut),
        }
    }

    /// Reads one line of at most `max` octets (CRLF included).
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        timeout: Duration,
        mut shutdown: Option<&mut Shutdown>,
    ) -> Result<Line, Stop> {
        loop {
            let pending = self.buffered();
            if let Some(lf) = memchr(b'\n', pending) {
                let too_long = self.discarding || lf + 1 > max;
                let line = pending[..lf + 1].to_vec();
                self.consume(lf + 1);
                if too_long {
                    self.discarding = false;
                    return Ok(Line::TooLong);
                }
                let Some(text) = line.strip_suffix(b"\r\n") else {
                    return Ok(Line::BareNewline);
                };
                if memchr(b'\r', text).is_some() {
                    return Ok(Line::BareNewline);
                }
                return Ok(Line::Text(text.to_vec()));
            }
            let held = pending.len();
            if held >= max {
                // Too long already: drop what is here and the rest up to the next LF.
                self.discarding = true;
                self.consume(held);
            }
            self.fill(timeout, shutdown.as_deref_mut()).await?;
        }
    }

    /// Reads and drops `n` bytes (a BDAT chunk the relay refused).
    pub(crate) async fn discard(&mut self, mut n: usize, timeout: Duration) -> Result<(), Stop> {
        loop {
            let take = n.min(self.buffered().len());
            self.consume(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill(timeout, None).await?;
        }
    }

    /// STARTTLS: the `220` goes out, anything the client pipelined after STARTTLS is dropped
    /// (it came in clear and must not be taken as said under TLS: CVE-2011-0411), then the
    /// handshake.
    pub(crate) async fn start_tls(
        &mut self,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> Result<(), Stop> {
        self.flush().await?;
        self.start = 0;
        self.end = 0;
        // The stream moves into the handshake; a stand-in holds its place meanwhile (and
        // after a failure, when the session ends anyway).
        let placeholder: Box<dyn Stream> =
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()));
        let plain = std::mem::replace(&mut self.stream, placeholder);
        match tokio::time::timeout(timeout, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.stream = Box::new(tls);
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Closed),
            Err(_) => Err(Stop::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn_with(input: &'static [u8]) -> Conn {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_, mut w) = tokio::io::split(client);
        w.write_all(input).await.unwrap();
        drop(w);
        Conn::new(Box::new(server), 4096, Duration::from_secs(1))
    }

    #[tokio::test]
    async fn lines_bare_newlines_and_long_lines() {
        let long: &'static [u8] = Box::leak(
            [
                &b"NOOP "[..],
                &[b'x'; 5000][..],
                b"\r\nQUIT\nRSET\rX\r\nEHLO a\r\n",
            ]
            .concat()
            .into_boxed_slice(),
        );
        let mut c = conn_with(long).await;
        let t = Duration::from_secs(1);
        assert_eq!(c.read_line(100, t, None).await, Ok(Line::TooLong));
        assert_eq!(c.read_line(100, t, None).await, Ok(Line::BareNewline));
        assert_eq!(c.read_line(100, t, None).await, Ok(Line::BareNewline));
        assert_eq!(
            c.read_line(100, t, None).await,
            Ok(Line::Text(b"EHLO a".to_vec()))
        );
        assert_eq!(c.read_line(100, t, None).await, Err(Stop::Closed));
    }
}
