//! Sends a bounded number of messages through one [`SmtpTransport`] as fast as it can and prints
//! the throughput: the Outbound side of `benches/smtp-throughput.sh`.
//!
//! ```text
//! cargo run --release -p outbound --example smtp_blast -- \
//!     --host 127.0.0.1 --port 2525 --tls none --count 1000 --concurrency 4 --pool 4 --reuse
//! ```
//!
//! Options (defaults in brackets):
//! - `--host H` [127.0.0.1], `--port P` [the TLS mode's port],
//!   `--tls none|starttls|implicit|opportunistic` [none], `--ca-file FILE`;
//! - `--user U --password PW` (AUTH with a password; neither: no AUTH);
//! - `--count N` [1000] messages in all, `--concurrency C` [1] sends in flight at once (tasks),
//!   `--pool N` [1] connections open at most;
//! - `--reuse` [default] keeps connections (up to 100 messages each), or `--new-connection`:
//!   one connection per message (`max_messages_per_connection(1)`; with `--pool 1` this is
//!   "new connection per message, one session");
//! - `--size BYTES` [5120] text body size (like `smtp-source -l`; headers come on top);
//! - `--from ADDR` [bench@example.test], `--to ADDR` [bench@example.test];
//! - `--no-pipelining` turns PIPELINING off (to measure what it is worth);
//! - `--chunking` sends with `BDAT` when the server offers CHUNKING (several transactions
//!   in flight per connection);
//! - `--threads N` [1]: 1 runs everything on one thread (tokio's current-thread runtime, as the
//!   `outbound` binary does, and like `smtp-source`'s single event loop); N > 1 a multi-thread
//!   runtime with N workers (on a machine whose cores the server shares, the extra worker
//!   mostly adds cross-thread wake-ups: compare the two with this flag).
//!
//! Output: one human-readable line and one `RESULT key=value ...` line for scripts: messages/s,
//! elapsed seconds (first send to last reply; building the transport and the final QUIT are
//! not timed), CPU time per message over the same span (all threads, from
//! `/proc/self/task/*/schedstat`), peak RSS (`VmHWM` from `/proc/self/status`), and the
//! transport's
//! [`WireStats`](outbound::smtp::WireStats). Any failed send makes the exit status 1.
//!
//! Every message is built (and so rendered) separately, with its own Message-ID
//! `<blast-RUN-I@DOMAIN>` and subject `smtp_blast RUN I`, as an application would.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outbound::smtp::{Credentials, SmtpTransport, TlsMode};
use outbound::{Message, Transport};

struct Options {
    host: String,
    port: Option<u16>,
    tls: TlsMode,
    ca_file: Option<String>,
    user: Option<String>,
    password: Option<String>,
    count: usize,
    concurrency: usize,
    pool: usize,
    reuse: bool,
    size: usize,
    from: String,
    to: String,
    pipelining: bool,
    chunking: bool,
    threads: usize,
}

const USAGE: &str =
    "usage: smtp_blast [--host H] [--port P] [--tls none|starttls|implicit|opportunistic] \
[--ca-file FILE] [--user U --password PW] [--count N] [--concurrency C] [--pool N] \
[--reuse | --new-connection] [--size BYTES] [--from ADDR] [--to ADDR] [--no-pipelining] [--chunking] \
[--threads N]";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port: None,
        tls: TlsMode::None,
        ca_file: None,
        user: None,
        password: None,
        count: 1000,
        concurrency: 1,
        pool: 1,
        reuse: true,
        size: 5120,
        from: "bench@example.test".into(),
        to: "bench@example.test".into(),
        pipelining: true,
        chunking: false,
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a valid number"))
        }
        match flag.as_str() {
            "--host" => o.host = value()?,
            "--port" => o.port = Some(num(&flag, value()?)?),
            "--tls" => {
                let v = value()?;
                o.tls = v.parse().map_err(|e| format!("--tls: {e}"))?;
            }
            "--ca-file" => o.ca_file = Some(value()?),
            "--user" => o.user = Some(value()?),
            "--password" => o.password = Some(value()?),
            "--count" => o.count = num(&flag, value()?)?,
            "--concurrency" => o.concurrency = num(&flag, value()?)?,
            "--pool" => o.pool = num(&flag, value()?)?,
            "--reuse" => o.reuse = true,
            "--new-connection" => o.reuse = false,
            "--size" => o.size = num(&flag, value()?)?,
            "--from" => o.from = value()?,
            "--to" => o.to = value()?,
            "--no-pipelining" => o.pipelining = false,
            "--chunking" => o.chunking = true,
            "--threads" => o.threads = num(&flag, value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    if o.count == 0 || o.concurrency == 0 || o.pool == 0 || o.threads == 0 {
        return Err("--count, --concurrency, --pool and --threads must be at least 1".into());
    }
    if o.user.is_some() != o.password.is_some() {
        return Err("--user and --password go together".into());
    }
    Ok(o)
}

/// A text body of `size` bytes: 72-character lines of printable ASCII, CRLF-terminated, so it
/// is sent as is (`7bit`), like `smtp-source`'s payload. (mail-builder quoted-printable-encodes
/// a body with any line over 75 characters; the 77-character line this used before made every
/// run pay for an encoding smtp-source never does.)
fn body(size: usize) -> String {
    const LINE: &str = "The quick brown fox jumps over the lazy dog; pack my box with five dozen";
    let mut s = String::with_capacity(size + 80);
    while s.len() + LINE.len() + 2 <= size {
        s.push_str(LINE);
        s.push_str("\r\n");
    }
    let rest = size.saturating_sub(s.len() + 2);
    if rest > 0 {
        s.push_str(&LINE[..rest.min(LINE.len())]);
        s.push_str("\r\n");
    }
    s
}

/// Peak resident set size of this process in KiB (`VmHWM`), if readable.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) this process's threads have used so far, in seconds: the sum of
/// `/proc/self/task/*/schedstat` (nanoseconds on a CPU; every runtime thread lives until the
/// end), else `/proc/self/stat` (clock ticks, assumed to be the usual 100 per second).
fn cpu_seconds() -> Option<f64> {
    let from_schedstat = || -> Option<f64> {
        let mut ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let path = task.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    };
    from_schedstat().or_else(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / 100.0)
    })
}

fn build(o: &Options) -> Result<SmtpTransport, outbound::Error> {
    let mut b = SmtpTransport::builder(o.host.clone())
        .tls(o.tls)
        .pool_size(o.pool)
        .max_messages_per_connection(if o.reuse { 100 } else { 1 })
        .pipelining(o.pipelining)
        .chunking(o.chunking)
        .timeout(Duration::from_secs(30));
    if let Some(p) = o.port {
        b = b.port(p);
    }
    if let Some(f) = &o.ca_file {
        b = b.ca_file(f);
    }
    if let (Some(u), Some(p)) = (&o.user, &o.password) {
        b = b.credentials(Credentials::password(u.clone(), p.clone()));
    }
    b.build()
}

fn message(o: &Options, run: &str, i: usize, text: &str) -> Result<Message, outbound::Error> {
    let domain = o.to.rsplit('@').next().unwrap_or("example.test");
    Ok(Message::builder()
        .from(o.from.clone())
        .to(o.to.clone())
        .subject(format!("smtp_blast {run} {i}"))
        .text(text)
        .message_id(format!("blast-{run}-{i}@{domain}"))
        .build()?)
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(blast(o)),
        Err(e) => {
            eprintln!("smtp_blast: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn blast(o: Arc<Options>) -> ExitCode {
    let transport = match build(&o) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("smtp_blast: {e}");
            return ExitCode::from(2);
        }
    };
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let text: Arc<str> = body(o.size).into();
    let rendered = match message(&o, &run, 0, &text).and_then(|m| Ok(m.render(None)?)) {
        Ok(bytes) => bytes.len(),
        Err(e) => {
            eprintln!("smtp_blast: {e}");
            return ExitCode::from(2);
        }
    };

    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let cpu_started = cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.concurrency.min(o.count) {
        let (o, t, next, failures, run, text) = (
            o.clone(),
            transport.clone(),
            next.clone(),
            failures.clone(),
            run.clone(),
            text.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.count {
                    return;
                }
                let result = match message(&o, &run, i, &text) {
                    Ok(m) => t.send(&m).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("smtp_blast: message {i} failed: {e}");
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let cpu = cpu_started.zip(cpu_seconds()).map(|(a, b)| b - a);
    transport.close().await;

    let failed = failures.load(Ordering::Relaxed);
    let sent = o.count - failed;
    let secs = elapsed.as_secs_f64();
    let rate = sent as f64 / secs;
    let rss = peak_rss_kib().map_or_else(|| "?".into(), |k| k.to_string());
    let stats = transport.stats();
    let cpu_us = cpu.map_or_else(
        || "?".into(),
        |c| format!("{:.0}", c * 1e6 / sent.max(1) as f64),
    );
    println!(
        "outbound: {sent}/{} messages ({rendered} bytes each) in {secs:.3} s = {rate:.1} msg/s; \
         {cpu_us} us CPU/msg; peak RSS {rss} KiB; {stats}",
        o.count
    );
    println!(
        "RESULT peer=outbound threads={} messages={sent} failed={failed} elapsed_s={secs:.4} rate={rate:.1} \
         cpu_us_per_msg={cpu_us} peak_rss_kib={rss} msg_bytes={rendered} connections={} reused={} \
         cmds_per_write={:.2} max_open={} round_trips_per_msg={:.2} pipelined={}",
        o.threads,
        stats.connections_opened,
        stats.reused_connections,
        stats.commands_per_write(),
        stats.max_open_connections,
        stats.round_trips as f64 / sent.max(1) as f64,
        stats.pipelined_transactions
    );
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
