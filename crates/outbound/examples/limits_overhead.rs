//! What the shared limits cost per decision with Redis on loopback, against this process's own
//! limits: the Outbound side of `benches/limits-overhead.sh`.
//!
//! ```text
//! cargo run --release -p outbound --example limits_overhead -- redis://127.0.0.1:6390/ 20000
//! ```
//!
//! Sends `COUNT` messages through the memory transport (no network besides Redis) behind:
//! no limit; the local `RateLimit` (a rate far above what is reached, so no send ever waits:
//! only the decision is timed); the same rate shared through Redis (one Lua script per
//! message); and the shared connection cap (one acquire and one release per message, the
//! worst case: a pooled connection takes one lease for many messages). Each at 1 and 8 sends
//! in flight. Prints one `RESULT` line per scenario: µs per message and messages/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::dev::MemoryTransport;
use outbound::layer::{Rate, RateLimit};
use outbound::limits::{account_id, FailPolicy, SharedLimits};
use outbound::{Message, Transport};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6390/".into());
    let count: usize = args.get(2).map_or(Ok(20_000), |c| c.parse())?;
    let limits = SharedLimits::new(&url, FailPolicy::Wait)?;
    limits.ping().await?;
    // Far above what one process reaches: the rate never makes a send wait.
    let rate = Rate::new(10_000_000, Duration::from_secs(1)).burst(10_000_000);
    let run = std::process::id().to_string();
    let message = Message::builder()
        .from("bench@example.test")
        .to("bench@example.test")
        .text("x")
        .build()?;
    for concurrency in [1usize, 8] {
        let none: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
        report(
            "no limit",
            concurrency,
            count,
            send_all(none, &message, count, concurrency).await?,
        );
        let local: Arc<dyn Transport> =
            Arc::new(RateLimit::new(MemoryTransport::new(), Some(rate), None));
        report(
            "local rate (GCRA in process)",
            concurrency,
            count,
            send_all(local, &message, count, concurrency).await?,
        );
        let id = account_id(&["bench", &run, &concurrency.to_string()]);
        let shared: Arc<dyn Transport> = Arc::new(RateLimit::shared(
            MemoryTransport::new(),
            rate,
            limits.rate(&id, rate),
            None,
        ));
        report(
            "redis rate (one EVALSHA per message)",
            concurrency,
            count,
            send_all(shared, &message, count, concurrency).await?,
        );
        let slots = limits.connection_slots(&id, concurrency);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            let slots = slots.clone();
            let n = count / concurrency + usize::from(t < count % concurrency);
            tasks.spawn(async move {
                for _ in 0..n {
                    slots.acquire().await?.release().await;
                }
                Ok::<(), outbound::Error>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        report(
            "redis connection slot (acquire + release)",
            concurrency,
            count,
            started.elapsed(),
        );
    }
    Ok(())
}

async fn send_all(
    t: Arc<dyn Transport>,
    message: &Message,
    count: usize,
    concurrency: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let (t, m) = (t.clone(), message.clone());
        let n = count / concurrency + usize::from(i < count % concurrency);
        tasks.spawn(async move {
            for _ in 0..n {
                t.send(&m).await?;
            }
            Ok::<(), outbound::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(started.elapsed())
}

fn report(scenario: &str, concurrency: usize, count: usize, took: Duration) {
    let us = took.as_secs_f64() * 1e6 / count as f64;
    let per_s = count as f64 / took.as_secs_f64();
    println!(
        "RESULT scenario=\"{scenario}\" concurrency={concurrency} us_per_msg={us:.1} msgs_per_s={per_s:.0}"
    );
}
