//! A TCP proxy in front of a real server that can break the connections it carries, to show
//! what the client does with a pooled connection that died while idle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How to break the connections open right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Close them at once (the client can see the EOF before using them).
    CloseNow,
    /// Keep them silently open, and close one as soon as the client writes to it (the client
    /// cannot tell before using it: its first command fails).
    CloseOnNextWrite,
}

#[derive(Default)]
struct Ctl {
    close_now: AtomicBool,
    close_on_write: AtomicBool,
    notify: tokio::sync::Notify,
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    conns: Arc<Mutex<Vec<Arc<Ctl>>>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<Ctl>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c2, a2) = (conns.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a2.fetch_add(1, Ordering::SeqCst);
                let ctl = Arc::new(Ctl::default());
                c2.lock().unwrap().push(ctl.clone());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pump(client, server, ctl).await;
                    }
                });
            }
        });
        Proxy {
            port,
            conns,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Breaks every connection open right now (new ones are not affected).
    pub fn break_all(&self, how: Break) {
        for ctl in self.conns.lock().unwrap().drain(..) {
            match how {
                Break::CloseNow => ctl.close_now.store(true, Ordering::SeqCst),
                Break::CloseOnNextWrite => ctl.close_on_write.store(true, Ordering::SeqCst),
            }
            ctl.notify.notify_one();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(mut client: TcpStream, mut server: TcpStream, ctl: Arc<Ctl>) {
    let mut from_client = [0u8; 16 * 1024];
    let mut from_server = [0u8; 16 * 1024];
    loop {
        if ctl.close_now.load(Ordering::SeqCst) {
            return; // both sockets close here
        }
        let silenced = ctl.close_on_write.load(Ordering::SeqCst);
        tokio::select! {
            n = client.read(&mut from_client) => {
                let Ok(n) = n else { return };
                if n == 0 || silenced {
                    // The client used a connection we broke: close without a word.
                    return;
                }
                if server.write_all(&from_client[..n]).await.is_err() { return }
            }
            n = server.read(&mut from_server), if !silenced => {
                let Ok(n) = n else { return };
                if n == 0 { return }
                if client.write_all(&from_server[..n]).await.is_err() { return }
            }
            _ = ctl.notify.notified() => {}
        }
    }
}
