//! Framed reading and writing on one connection, each within its phase's time limit, and what
//! a failure means in that phase.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::socket::Tuning;
use super::{secs, ConnectParams};
use crate::message::RenderedMessage;
use crate::smtp::reply::{self, Reply, ReplyError, Stage};
use crate::smtp::verdict::{self, Reached};
use crate::smtp::wire::{self, Command, Counters};
use crate::{Error, ErrorKind};

/// Any byte stream a session can run over (TCP, TLS over TCP, an in-memory pipe in tests).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One SMTP connection: the stream, its buffers, and whether it is still usable.
pub(crate) struct Connection {
    io: Option<Box<dyn Io>>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    pub(super) params: Arc<ConnectParams>,
    counters: Arc<Counters>,
    id: u64,
    pub(super) local: Option<SocketAddr>,
    pub(super) tuning: Tuning,
    /// An I/O failure or timeout, a `421`, or unasked bytes: never reused, no QUIT.
    broken: bool,
    /// The stream is TLS: a write that fails may have sent records of what it was given
    /// before the one that failed (a TCP write that fails took nothing).
    tls: bool,
    /// Why it broke under a message, when it was not the server's `421`: what the server may
    /// have had of the message in flight (a failure, or a reply that leaves the server's state
    /// unknown). `None` with `broken`: the server closed the session with a `421`.
    lost_at: Option<Reached>,
    /// Something was written since the last read from the socket: the next read that has to
    /// wait for the server is a round trip.
    awaiting_server: bool,
    /// What this connection sent in AUTH (the SASL responses, the password or token): a server
    /// that echoes it in a reply must not get it into a log or an error.
    secrets: Vec<secrecy::SecretString>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.connection_closed();
    }
}

/// A low-level failure, before it is given a meaning.
enum Failure {
    Io(std::io::Error),
    Eof,
    Timeout,
    Reply(ReplyError),
}

impl Connection {
    pub(super) fn new(
        io: Box<dyn Io>,
        local: Option<SocketAddr>,
        tuning: Tuning,
        params: Arc<ConnectParams>,
        counters: Arc<Counters>,
        id: u64,
    ) -> Connection {
        counters.connection_opened();
        Connection {
            io: Some(io),
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(1024),
            params,
            counters,
            id,
            local,
            tuning,
            tls: false,
            broken: false,
            lost_at: None,
            awaiting_server: false,
            secrets: Vec::new(),
        }
    }

    /// Remembers what AUTH sends, so replies are logged and reported without it.
    pub(crate) fn add_secrets(&mut self, secrets: impl IntoIterator<Item = secrecy::SecretString>) {
        self.secrets.extend(secrets);
    }

    /// `text` without any secret this connection sent.
    pub(crate) fn redact(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_string();
        }
        crate::net::Redactor::new(&self.secrets).scrub(text)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// The server refused to go on in a way that leaves the connection unusable and its state
    /// unknown (e.g. RSET refused), while a message had `reached` it.
    pub(super) fn mark_broken(&mut self, reached: Reached) {
        self.broken = true;
        self.lost_at = Some(reached);
    }

    /// Why the connection is broken, if it is: `Some(None)` when the server closed it with a
    /// `421` (and processed nothing after), `Some(Some(reached))` when it failed (or the
    /// server's state became unknown) while a message had `reached` the server.
    pub(super) fn broken(&self) -> Option<Option<Reached>> {
        self.broken.then_some(self.lost_at)
    }

    /// Whether bytes the server sent are waiting unread.
    pub(super) fn has_buffered_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// The stream, to be wrapped in TLS.
    pub(super) fn take_stream(&mut self) -> Result<Box<dyn Io>, Error> {
        self.io
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Network, "the connection is closed"))
    }

    /// Puts back the stream [`take_stream`](Self::take_stream) took, now wrapped in TLS.
    pub(super) fn put_stream(&mut self, io: Box<dyn Io>) {
        self.io = Some(io);
        self.tls = true;
    }

    /// Writes `commands` in one network write (a pipelined group when there are several).
    pub(crate) async fn send(&mut self, commands: &[Command<'_>]) -> Result<(), Error> {
        self.wbuf.clear();
        for c in commands {
            tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: {}", c.log_line());
            c.write_to(&mut self.wbuf);
        }
        let limit = self.params.timeouts.command;
        let what = commands.first().map(|c| c.name()).unwrap_or("a command");
        let buf = std::mem::take(&mut self.wbuf);
        let result = self.write_all(&buf, limit).await;
        self.wbuf = buf;
        match result {
            Ok(()) => {
                self.counters.wrote_commands(commands.len() as u64);
                Ok(())
            }
            Err(failure) => Err(self.failure(
                failure,
                &format!("sending {what}"),
                limit,
                Reached::Commands,
            )),
        }
    }

    /// Writes `commands` and, in the same write, `chunk` (the content of the `BDAT` that ends
    /// `commands`). A failure here means the chunk did not reach the server whole, so nothing
    /// can have been delivered; once this returned, any failure is Ambiguous (see
    /// [`read_reply_committed`](Self::read_reply_committed)).
    pub(crate) async fn send_with_chunk(
        &mut self,
        commands: &[Command<'_>],
        chunk: &[u8],
    ) -> Result<(), Error> {
        self.wbuf.clear();
        for c in commands {
            tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: {}", c.log_line());
            c.write_to(&mut self.wbuf);
        }
        tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: <{} bytes of message>", chunk.len());
        self.wbuf.extend_from_slice(chunk);
        let limit = self.params.timeouts.data_end;
        let buf = std::mem::take(&mut self.wbuf);
        let mut taken = 0;
        let result = self.write_tracked(&buf, limit, &mut taken).await;
        // The server can have the message only if the stream took the whole chunk (its end).
        let reached = if taken == buf.len() {
            Reached::Whole
        } else {
            Reached::Commands
        };
        self.wbuf = buf;
        if self.wbuf.capacity() > 64 * 1024 {
            self.wbuf = Vec::with_capacity(1024); // do not keep a large message's buffer
        }
        match result {
            Ok(()) => {
                self.counters.wrote_commands(commands.len() as u64);
                Ok(())
            }
            Err(f) => Err(self.failure(f, "sending the message (BDAT)", limit, reached)),
        }
    }

    /// Writes `message` dot-stuffed, then the final `.` and, in the same write as the `.`, the
    /// commands of the next transaction when `next` has any (RFC 2920 section 3.1: a client
    /// may pipeline the next transaction's MAIL, RCPT and DATA behind the end of data).
    ///
    /// The message is encoded into one reused buffer, a chunk at a time (no second copy of a
    /// large message, nor of its attachments), and its last chunk goes out in the same write as
    /// the `.`: a message under 256 KiB costs one write, not two. What a failure means depends
    /// on how far the writing got: before any byte of the `.` was handed to the stream, nothing
    /// can have been delivered (Network/Timeout, safe to resend); from then on the outcome may
    /// be unknown ([`ErrorKind::Ambiguous`]; the next transaction's commands carry no message,
    /// so they are safe to resend).
    pub(super) async fn write_payload(
        &mut self,
        message: &RenderedMessage,
        next: &[Command<'_>],
    ) -> Result<(), Error> {
        const CHUNK: usize = 256 * 1024;
        let limit = self.params.timeouts.data_end;
        let deadline = tokio::time::Instant::now() + limit;
        let mut encoder = wire::DataEncoder::default();
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        let first = message.len().min(CHUNK);
        buf.reserve(first + first / 32 + 64);
        let result = async {
            for piece in message.chunks() {
                for part in piece.chunks(CHUNK) {
                    encoder.encode(part, &mut buf);
                    if buf.len() >= CHUNK {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if let Err(f) = self.write_all(&buf, left).await {
                            let what = "sending the message";
                            return Err(self.failure(f, what, limit, Reached::Commands));
                        }
                        buf.clear();
                    }
                }
            }
            encoder.finish(&mut buf);
            let end_at = buf.len();
            buf.extend_from_slice(wire::END_OF_DATA);
            tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: <{} bytes of message> .", message.len());
            for c in next {
                tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "C: {} (pipelined behind the end of data)", c.log_line());
                c.write_to(&mut buf);
            }
            // The end of data gets the whole limit again, as when it was a write of its own.
            let mut written = 0;
            match self.write_tracked(&buf, limit, &mut written).await {
                Ok(()) => {
                    self.counters.wrote_commands(next.len() as u64);
                    Ok(())
                }
                // What the server may have: the message's end only once the stream took a
                // byte of the `.` (the verdict is `verdict`'s).
                Err(f) if written <= end_at && !self.may_have_sent_past(&f, end_at, buf.len()) => {
                    Err(self.failure(f, "sending the message", limit, Reached::Commands))
                }
                Err(f) => Err(self.failure(f, "sending the end of DATA", limit, Reached::Whole)),
            }
        }
        .await;
        self.wbuf = if buf.capacity() > 64 * 1024 {
            Vec::with_capacity(1024) // do not keep a large message's buffer
        } else {
            buf
        };
        result
    }

    /// Whether a write that failed with `failure` and was given bytes up to `len` may have
    /// sent past `end_at` although the stream reported taking less. A TCP write either takes
    /// bytes or fails; a TLS write fails when the socket does, possibly after earlier records
    /// of the same write went out, so when bytes follow the end of data (the next message's
    /// commands), the records holding the `.` may have reached the server. (Without such
    /// bytes the `.` ends the last record, which cannot have gone out whole.)
    fn may_have_sent_past(&self, failure: &Failure, end_at: usize, len: usize) -> bool {
        self.tls && matches!(failure, Failure::Io(_)) && len > end_at + wire::END_OF_DATA.len()
    }

    async fn write_all(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Failure> {
        self.write_tracked(bytes, limit, &mut 0).await
    }

    /// Writes `bytes` within `limit`, counting in `written` how many of them the stream took,
    /// so a caller can tell whether a failure came before or after a given byte.
    async fn write_tracked(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        written: &mut usize,
    ) -> Result<(), Failure> {
        let io = self.io.as_mut().ok_or(Failure::Eof)?;
        let write = async {
            while *written < bytes.len() {
                let n = io.write(&bytes[*written..]).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
                }
                *written += n;
            }
            io.flush().await
        };
        let result = match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout),
        };
        self.tuning.after_write();
        self.awaiting_server = true;
        result
    }

    /// Reads one reply, within the phase's time limit.
    pub(crate) async fn read_reply(&mut self, stage: Stage) -> Result<Reply, Error> {
        self.read_reply_raw(stage).await.map(|(r, _)| r)
    }

    /// Reads one reply and its raw bytes. A failure waiting for the reply to the final `.` is
    /// [`ErrorKind::Ambiguous`].
    pub(super) async fn read_reply_raw(&mut self, stage: Stage) -> Result<(Reply, Vec<u8>), Error> {
        let limit = match stage {
            Stage::Greeting => self.params.timeouts.greeting,
            Stage::DataEnd => self.params.timeouts.data_end,
            _ => self.params.timeouts.command,
        };
        self.read_reply_within(stage, limit).await
    }

    /// Whether what the server sent so far starts like a TLS record (a handshake or an
    /// alert): a TLS port answering a plain-text client.
    pub(super) fn received_tls_record(&self) -> bool {
        matches!(self.rbuf.first(), Some(0x15 | 0x16)) && self.rbuf.get(1) == Some(&0x03)
    }

    /// Reads one reply to a command that went out after a complete message (a `BDAT … LAST`
    /// chunk was written): whatever it answers, a failure to get it is Ambiguous.
    pub(crate) async fn read_reply_committed(&mut self, stage: Stage) -> Result<Reply, Error> {
        let limit = self.params.timeouts.data_end;
        self.read_reply_inner(stage, limit, Reached::Whole)
            .await
            .map(|(r, _)| r)
    }

    /// Reads one reply within `limit` (instead of the phase's own).
    pub(super) async fn read_reply_within(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<(Reply, Vec<u8>), Error> {
        let reached = if stage == Stage::DataEnd {
            Reached::Whole
        } else {
            Reached::Commands
        };
        self.read_reply_inner(stage, limit, reached).await
    }

    /// Reads one reply; `reached`: what the server may have of the message in flight, should
    /// the reply not come.
    async fn read_reply_inner(
        &mut self,
        stage: Stage,
        limit: Duration,
        reached: Reached,
    ) -> Result<(Reply, Vec<u8>), Error> {
        let result = tokio::time::timeout(limit, self.read_frame()).await;
        let what = || format!("waiting for the reply to {}", stage.what());
        match result {
            Ok(Ok((mut reply, raw))) => {
                tracing::trace!(target: "outbound::smtp::wire", conn = self.id, "S: {}",
                    self.redact(&reply.to_string()));
                if reply.code >= 400 && !self.secrets.is_empty() {
                    // A refusal may quote what AUTH sent; every error made from it is clean.
                    reply.text = self.redact(&reply.text);
                }
                if reply.code == 421 {
                    // "Service not available, closing transmission channel".
                    self.broken = true;
                }
                Ok((reply, raw))
            }
            Ok(Err(failure)) => Err(self.failure(failure, &what(), limit, reached)),
            Err(_) => Err(self.failure(Failure::Timeout, &what(), limit, reached)),
        }
    }

    async fn read_frame(&mut self) -> Result<(Reply, Vec<u8>), Failure> {
        loop {
            if let Some(len) = reply::complete_reply_len(&self.rbuf).map_err(Failure::Reply)? {
                let raw: Vec<u8> = self.rbuf.drain(..len).collect();
                let reply = reply::parse_reply(&raw).map_err(Failure::Reply)?;
                return Ok((reply, raw));
            }
            let io = self.io.as_mut().ok_or(Failure::Eof)?;
            if std::mem::take(&mut self.awaiting_server) {
                self.counters.round_trip();
            }
            // Straight into the buffer's spare room: no copy, and no 4 KiB array in the
            // state of every future that reads a reply.
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(4096);
            }
            let n = io.read_buf(&mut self.rbuf).await.map_err(Failure::Io)?;
            if n == 0 {
                return Err(Failure::Eof);
            }
        }
    }

    /// Describes a low-level failure, leaves the connection broken, and asks `verdict` what it
    /// means for the message in flight, which had `reached` the server.
    fn failure(
        &mut self,
        failure: Failure,
        what: &str,
        limit: Duration,
        reached: Reached,
    ) -> Error {
        self.broken = true;
        self.lost_at = Some(reached);
        let host = &self.params.host;
        let (kind, message, source) = match failure {
            Failure::Timeout => (
                ErrorKind::Timeout,
                format!("{host} did not answer within {} ({what})", secs(limit)),
                None,
            ),
            Failure::Eof => (
                ErrorKind::Network,
                format!("{host} closed the connection ({what})"),
                None,
            ),
            Failure::Io(e) => (
                ErrorKind::Network,
                format!("the connection to {host} failed ({what}): {e}"),
                Some(e),
            ),
            Failure::Reply(e) => (ErrorKind::Permanent, format!("{e} ({what})"), None),
        };
        let err = verdict::connection_failed(reached, kind, message);
        match source {
            Some(e) => err.with_source(e),
            None => err,
        }
    }

    /// Whether the connection is usable, nothing is buffered, and a non-blocking read finds
    /// neither data nor a close. Costs no round trip.
    pub(super) fn probe_quiet(&mut self, what: &str) -> bool {
        if self.broken || !self.rbuf.is_empty() {
            return false;
        }
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut buf = [0u8; 512];
        let mut read_buf = ReadBuf::new(&mut buf);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match Pin::new(io).poll_read(&mut cx, &mut read_buf) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) => {
                let got = read_buf.filled();
                if got.is_empty() {
                    tracing::debug!(conn = self.id, "{what} was closed by the server");
                } else {
                    tracing::debug!(
                        conn = self.id,
                        said = %String::from_utf8_lossy(got).trim(),
                        "the server spoke unasked on the {what}; dropping it"
                    );
                }
                self.broken = true;
                false
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "{what} is broken");
                self.broken = true;
                false
            }
        }
    }

    /// Says goodbye: QUIT (unless the connection is broken), its reply, then waits briefly for
    /// the server to close. Errors are ignored (the connection is over either way).
    pub(super) async fn close(mut self) {
        if !self.broken && self.io.is_some() && self.send(&[Command::Quit]).await.is_ok() {
            let _ = self.read_reply(Stage::Quit).await;
            // Wait (briefly) for the server to close its end, so a new connection opened
            // right after this one never overlaps it on the server.
            if let Some(io) = self.io.as_mut() {
                let mut b = [0u8; 64];
                let closed = tokio::time::timeout(
                    Duration::from_millis(500).min(self.params.timeouts.command),
                    io.read(&mut b),
                )
                .await;
                if matches!(closed, Ok(Ok(0))) {
                    // The server closed its end: there is nobody left to tell (no TLS
                    // close_notify, no separate FIN); dropping the socket closes it.
                    self.io = None;
                }
            }
        }
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), io.shutdown()).await;
        }
    }
}
