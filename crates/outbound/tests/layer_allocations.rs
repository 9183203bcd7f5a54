//! The layers sit on every send, so their shared forwarding core (`outbound::layer::Layer`)
//! must cost nothing: a method a layer does not write allocates nothing more than the wrapped
//! transport's, and a method it writes costs only the one box `async_trait` makes of it.
//! Counted by an allocator that counts (`stats_alloc`), on a runtime of this thread only.

use std::sync::{Arc, Mutex};

use outbound::dev::MemoryTransport;
use outbound::layer::{DefaultSender, Rate, RateLimit, Retry, RetryPolicy, Timed};
use outbound::{Message, Transport};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The counts are process-wide: one measurement at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Allocations made while `f` runs to completion on this thread's runtime.
fn allocations<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> usize {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let region = Region::new(GLOBAL);
    rt.block_on(f);
    region.change().allocations
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"))
}

fn message() -> Message {
    Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("hi")
        .build()
        .unwrap_or_else(|e| panic!("a valid message: {e}"))
}

/// The cost of `verify` and `send_prepared` through `t` beyond the bare memory transport's.
fn extra(rt: &tokio::runtime::Runtime, t: &dyn Transport) -> (isize, isize) {
    let bare = MemoryTransport::new();
    let prepared = bare
        .prepare(&message())
        .unwrap_or_else(|e| panic!("prepared: {e}"));
    // Once each first, so lazily initialised state is not counted.
    rt.block_on(async {
        let _ = bare.send_prepared(&prepared).await;
        let _ = t.send_prepared(&prepared).await;
    });
    let verify = |t: &dyn Transport| {
        allocations(rt, async {
            let _ = t.verify().await;
        }) as isize
    };
    let send = |t: &dyn Transport| {
        allocations(rt, async {
            let _ = t.send_prepared(&prepared).await;
        }) as isize
    };
    (verify(t) - verify(&bare), send(t) - send(&bare))
}

#[test]
fn a_forwarded_method_costs_no_allocation_and_a_written_one_its_own_box() {
    let rt = runtime();
    let sender = "app@example.com"
        .parse()
        .unwrap_or_else(|e| panic!("a mailbox: {e}"));
    // DefaultSender writes only `prepare`: sending and verifying through it cost nothing.
    assert_eq!(
        extra(&rt, &DefaultSender::new(MemoryTransport::new(), sender)),
        (0, 0)
    );
    // A shared or boxed transport forwards everything.
    let shared: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    assert_eq!(extra(&rt, &shared), (0, 0));
    let boxed: Box<dyn Transport> = Box::new(MemoryTransport::new());
    assert_eq!(extra(&rt, &boxed), (0, 0));
    // Timed, Retry and RateLimit write `send_prepared`: one box each, nothing for `verify`.
    assert_eq!(extra(&rt, &Timed::new(MemoryTransport::new())), (0, 1));
    assert_eq!(
        extra(
            &rt,
            &Retry::new(MemoryTransport::new(), RetryPolicy::new(3))
        ),
        (0, 1)
    );
    // The in-process rate decides without a box of its own (far above what is reached).
    let rate = Rate::new(1_000_000, std::time::Duration::from_secs(1)).burst(1_000_000);
    assert_eq!(
        extra(
            &rt,
            &RateLimit::new(MemoryTransport::new(), Some(rate), None)
        ),
        (0, 1)
    );
}
