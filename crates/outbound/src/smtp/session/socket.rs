//! TCP options: no Nagle delay, and quick ACKs right after a TLS handshake.

use tokio::net::TcpStream;

/// The TCP socket's options over the life of a connection.
pub(super) struct Tuning {
    /// A second handle on the TCP socket (a dup'd descriptor) for socket options once the
    /// stream is wrapped in TLS; `None` over test pipes.
    socket: Option<socket2::Socket>,
    /// Quick-ACK once more after the next write (see [`after_tls_handshake`](Self::after_tls_handshake)).
    quickack_after_write: bool,
}

impl Tuning {
    /// No socket to tune (a test pipe).
    #[cfg(test)]
    pub(super) fn none() -> Self {
        Tuning {
            socket: None,
            quickack_after_write: false,
        }
    }

    /// Turns Nagle's algorithm off on `tcp` and, when the connection may do a TLS handshake
    /// (`tls`), keeps a handle for the options set after it. A plain connection needs none, and
    /// skips the `dup` and `close` it costs (two system calls per connection).
    pub(super) fn of(tcp: &TcpStream, tls: bool) -> Self {
        // Pipelined groups and short replies must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        #[cfg(unix)]
        let socket = if tls {
            use std::os::fd::AsFd;
            tcp.as_fd()
                .try_clone_to_owned()
                .ok()
                .map(socket2::Socket::from)
        } else {
            None
        };
        #[cfg(not(unix))]
        let socket = {
            let _ = tls;
            None
        };
        Tuning {
            socket,
            quickack_after_write: false,
        }
    }

    /// Right after a TLS handshake. The server sends its TLS 1.3 session tickets right after
    /// the handshake and then, as a second small write, its greeting (465) or EHLO reply (587).
    /// Postfix's Nagle holds that reply until the tickets are acknowledged, and Linux delays the
    /// ACK by 40 ms because we have nothing to send with it: a 40 ms stall per new connection
    /// (measured: 38 vs 131 msg/s, BENCHMARKS.md). Quick-ACK mode acknowledges the tickets at
    /// once. Sending (our EHLO after STARTTLS) puts Linux back into delayed-ACK mode, so it is
    /// set again after the next write; with implicit TLS we only wait for the greeting.
    pub(super) fn after_tls_handshake(&mut self) {
        if let Some(socket) = &self.socket {
            set_quickack(socket);
            self.quickack_after_write = true;
        }
    }

    /// After each write.
    pub(super) fn after_write(&mut self) {
        if std::mem::take(&mut self.quickack_after_write) {
            if let Some(socket) = &self.socket {
                set_quickack(socket);
            }
        }
    }
}

/// Asks the kernel to acknowledge the next segments at once (Linux `TCP_QUICKACK`; a no-op
/// elsewhere). Best effort: a failure only costs latency.
fn set_quickack(socket: &socket2::Socket) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.set_tcp_quickack(true) {
        tracing::debug!(error = %e, "TCP_QUICKACK not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}
