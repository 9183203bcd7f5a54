//! One tokio runtime for every sender in the process, recreated after `fork()`.
//!
//! Celery's prefork workers fork after the app (and maybe a sender) was set up. A forked child
//! has the parent's memory but none of its threads, so the parent's runtime is unusable there:
//! the child builds its own. The parent's runtime is leaked, never dropped, in the child:
//! dropping it would deregister the parent's sockets from an epoll instance the two
//! processes share.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

struct Owned {
    pid: u32,
    runtime: Arc<Runtime>,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// The runtime of this process, created on first use (and again in a forked child).
pub(crate) fn get() -> std::io::Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(owned) = slot.as_ref() {
        if owned.pid == pid {
            return Ok(owned.runtime.clone());
        }
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outbound-io")
            .enable_all()
            .build()?,
    );
    if let Some(inherited) = slot.replace(Owned {
        pid,
        runtime: runtime.clone(),
    }) {
        // From the parent: its worker threads do not exist here (see the module docs).
        std::mem::forget(inherited);
    }
    Ok(runtime)
}

/// Runs `future` to completion on the shared runtime's worker threads, where its I/O driver
/// is, and blocks the calling thread until it is done (one wake-up at the end, instead of one
/// per I/O event for a future polled on the calling thread).
pub(crate) fn block_on<F>(future: F) -> std::io::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = get()?;
    let task = runtime.spawn(future);
    runtime
        .block_on(task)
        .map_err(|e| std::io::Error::other(format!("the send task failed: {e}")))
}

/// The pid the current runtime was created in, 0 before first use.
pub(crate) fn owner_pid() -> u32 {
    RUNTIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, |o| o.pid)
}
