//! One sending process of the shared-limits tests (tests/shared_limits.rs starts several, as
//! Dify's Celery workers would be): builds the transport from the environment exactly as the
//! `outbound` binary does (`MAILER_DSN`, `MAIL_LIMITS_URL`, `MAIL_LIMITS_FAIL`, ...) and sends
//! `COUNT` messages, `CONCURRENCY` at a time.
//!
//!   shared-limits-sender TAG COUNT CONCURRENCY FROM TO
//!
//! Message `i` has the Message-ID `<TAG-i@DOMAIN-of-TO>`. For each accepted message it prints
//! `sent I UNIX_MICROS` on stdout; a failed one prints `failed I KIND ERROR`. Warnings (the
//! shared limits' fallback) go to stderr. Exits 0 when every message was accepted.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use outbound::{Message, Transport};
use tokio::sync::Semaphore;

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, tag, count, concurrency, from, to] = args.as_slice() else {
        eprintln!("usage: shared-limits-sender TAG COUNT CONCURRENCY FROM TO");
        std::process::exit(64);
    };
    let (Ok(count), Ok(concurrency)) = (count.parse::<usize>(), concurrency.parse::<usize>())
    else {
        eprintln!("COUNT and CONCURRENCY must be numbers");
        std::process::exit(64);
    };
    let transport: Arc<dyn Transport> = match outbound::from_env() {
        Ok(Some(t)) => t,
        Ok(None) => {
            eprintln!("nothing configured: set MAILER_DSN");
            std::process::exit(78);
        }
        Err(e) => {
            eprintln!("configuration: {e}");
            std::process::exit(78);
        }
    };
    let domain = to.rsplit('@').next().unwrap_or("example.test").to_string();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let message = Message::builder()
            .from(from.as_str())
            .to(to.as_str())
            .subject(format!("{tag} {i}"))
            .text(format!("shared limits message {i} of {count}\n"))
            .message_id(format!("{tag}-{i}@{domain}"))
            .build();
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                eprintln!("message {i}: {e}");
                std::process::exit(65);
            }
        };
        let (t, gate) = (transport.clone(), gate.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await;
            match t.send(&message).await {
                Ok(_) => {
                    println!("sent {i} {}", now_micros());
                    true
                }
                Err(e) => {
                    println!("failed {i} {} {e}", e.kind());
                    false
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(ok) = tasks.join_next().await {
        if !matches!(ok, Ok(true)) {
            failed += 1;
        }
    }
    transport.close().await;
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
