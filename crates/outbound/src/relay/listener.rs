//! Accepting connections: one task per listening socket, a session task per connection, the
//! connection count (one over it is answered `421 4.7.0` and closed at once), and the drain
//! on shutdown (no new connections; sessions waiting for a command are told `421 4.3.2`;
//! a message being received is finished; after the grace period what is left is cut).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::context::Context;
use super::reply::Reply;
use super::session;

/// A bound socket and what it speaks.
pub(crate) struct Listener {
    pub tcp: TcpListener,
    /// TLS from the first byte (the implicit-TLS listener).
    pub implicit_tls: bool,
}

impl Listener {
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }
}

/// Accepts on `listener` until `shutdown` turns true, then waits up to `grace` for its
/// sessions and cuts the rest.
pub(crate) async fn accept_loop(
    listener: Listener,
    ctx: Arc<Context>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.tcp.accept() => match accepted {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let ctx = ctx.clone();
                            let signal = shutdown.clone();
                            let tls = listener.implicit_tls;
                            sessions.spawn(async move {
                                session::run(ctx, Box::new(stream), client, tls, signal).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(target: "outbound::relay", %client, "connection limit reached: refused");
                            sessions.spawn(refuse(stream, ctx.host.clone(), listener.implicit_tls));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(target: "outbound::relay", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(target: "outbound::relay", left = sessions.len(), "sessions still open after the grace period: cut");
        sessions.abort_all();
    }
}

/// One connection too many: `421 4.7.0` and close (on the implicit-TLS listener the client
/// expects a handshake, so it is just closed).
async fn refuse(mut stream: TcpStream, host: String, implicit_tls: bool) {
    if !implicit_tls {
        let mut out = Vec::new();
        Reply::too_many_connections(&host).write_to(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&out)).await;
    }
    let _ = stream.shutdown().await;
}
