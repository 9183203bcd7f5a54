//! A TCP proxy in front of a real server that can break the connections it carries, to show
//! what the client does with a pooled connection that died while idle.
//!
//! It also counts the connections open through it at every moment ([`Proxy::max_open`],
//! [`Proxy::timeline`]): the shared-limits tests put it in front of Postfix to see the
//! cluster-wide connection cap from the server's side.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    open: Arc<OpenCount>,
    task: tokio::task::JoinHandle<()>,
}

/// Connections open through the proxy, and every change of that number.
struct OpenCount {
    started: Instant,
    /// (when, open connections after the change); the mutex orders the changes.
    changes: Mutex<Vec<(Duration, usize)>>,
    now: AtomicUsize,
}

impl OpenCount {
    fn change(&self, opened: bool) {
        let mut changes = self.changes.lock().unwrap();
        let n = if opened {
            self.now.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.now.fetch_sub(1, Ordering::SeqCst) - 1
        };
        changes.push((self.started.elapsed(), n));
    }
}

/// Decrements the open count when a connection's pump ends, however it ends.
struct Opened(Arc<OpenCount>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.change(false);
    }
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<Ctl>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(OpenCount {
            started: Instant::now(),
            changes: Mutex::new(Vec::new()),
            now: AtomicUsize::new(0),
        });
        let (c2, a2, o2) = (conns.clone(), accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a2.fetch_add(1, Ordering::SeqCst);
                o2.change(true);
                let opened = Opened(o2.clone());
                let ctl = Arc::new(Ctl::default());
                c2.lock().unwrap().push(ctl.clone());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _opened = opened;
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
            open,
            task,
        }
    }

    /// Connections open through the proxy right now (from the client's connect until either
    /// side closed).
    pub fn open_now(&self) -> usize {
        self.open.now.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub fn max_open(&self) -> usize {
        self.max_open_since(Duration::ZERO)
    }

    /// The most connections open at once from `since` (after the proxy started) on,
    /// counting those already open then.
    pub fn max_open_since(&self, since: Duration) -> usize {
        let changes = self.open.changes.lock().unwrap();
        let before = changes
            .iter()
            .take_while(|(t, _)| *t < since)
            .last()
            .map_or(0, |(_, n)| *n);
        changes
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, n)| *n)
            .fold(before, usize::max)
    }

    /// Every change of the open count: (time since the proxy started, open after it).
    pub fn timeline(&self) -> Vec<(Duration, usize)> {
        self.open.changes.lock().unwrap().clone()
    }

    /// How long ago the proxy started (the timeline's zero).
    pub fn elapsed(&self) -> Duration {
        self.open.started.elapsed()
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
