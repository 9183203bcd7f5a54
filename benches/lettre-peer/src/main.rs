//! lettre 0.11's async SMTP transport (tokio, pooled), doing what `smtp_blast` does: `--count`
//! messages of a `--size`-byte text body, `--concurrency` sends in flight on one transport
//! whose pool holds at most `--pool` connections. No TLS, no AUTH (smtp-sink, the delay proxy).
//!
//!     lettre-peer --port 2525 --count 10000 --concurrency 4 --pool 4
//!
//! Prints `RESULT peer=lettre messages=N failed=F elapsed_s=S rate=R peak_rss_kib=K`.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn peak_rss_kib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host = arg(&args, "--host", "127.0.0.1");
    let port: u16 = arg(&args, "--port", "2525").parse().expect("--port");
    let count: usize = arg(&args, "--count", "1000").parse().expect("--count");
    let concurrency: usize = arg(&args, "--concurrency", "1")
        .parse()
        .expect("--concurrency");
    let pool: u32 = arg(&args, "--pool", "1").parse().expect("--pool");
    let size: usize = arg(&args, "--size", "5120").parse().expect("--size");
    let from = arg(&args, "--from", "bench@example.test");
    let to = arg(&args, "--to", "bench@example.test");

    let transport: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .pool_config(PoolConfig::new().max_size(pool))
            .build();
    let line = "lettre bench line of text, 64 bytes long, to fill the body....\n";
    let body: Arc<str> = line.repeat(size / line.len() + 1)[..size]
        .to_string()
        .into();
    let run = std::process::id();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (t, next, failed, body, from, to) = (
            transport.clone(),
            next.clone(),
            failed.clone(),
            body.clone(),
            from.clone(),
            to.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                // Built per message, like an application does (and like smtp_blast).
                let msg = Message::builder()
                    .from(from.parse().expect("--from"))
                    .to(to.parse().expect("--to"))
                    .subject(format!("lettre-peer {run} {i}"))
                    .message_id(Some(format!("<lettre-{run}-{i}@example.test>")))
                    .body(body.to_string())
                    .expect("message");
                if let Err(e) = t.send(msg).await {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("lettre-peer: message {i} failed: {e}");
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    let sent = count - failed;
    println!(
        "RESULT peer=lettre messages={sent} failed={failed} elapsed_s={secs:.4} rate={:.1} peak_rss_kib={}",
        sent as f64 / secs,
        peak_rss_kib()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
