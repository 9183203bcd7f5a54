//! Shared limits through a real `redis-server` (issue 12): several sending processes (the
//! `shared-limits-sender` binary, configured from the environment like the `outbound` binary)
//! send as one account through a counting TCP proxy in front of Postfix (587, STARTTLS + AUTH).
//!
//! What is measured, and where:
//! - connections at once: the proxy counts every connection open through it, at every moment;
//! - delivered exactly once: every Message-ID appears in exactly one Maildir file;
//! - the aggregate rate: each process prints when each message was accepted (one clock, one
//!   machine);
//! - slots of a killed process: the leases in Redis (`redis-cli ZCARD`) and when the next
//!   process gets to send;
//! - Redis stopped and restarted: a private `redis-server` the test stops and starts again;
//!   the processes' warnings on stderr, the proxy's count after the restart.
//!
//! Needs testenv/smtp-servers.sh and testenv/redis/server.sh started (scripts/test does); fails
//! loudly otherwise. The tests run one at a time (they measure time and share two cores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outbound_testkit::proxy::Proxy;
use outbound_testkit::{unique, Maildir, TestEnv};
use tokio::process::{Child, Command};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POOL: usize = 3;

/// The test Redis: `$OUTBOUND_TESTENV_DIR/redis/env`, checked to answer.
struct RedisEnv {
    url: String,
    server: PathBuf,
}

fn redis_env() -> RedisEnv {
    let path = TestEnv::state_dir().join("redis/env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the test Redis is not running: run testenv/redis/server.sh start ({} unreadable: {e})",
            path.display()
        )
    });
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let env = RedisEnv {
        url: vars["OUTBOUND_TEST_REDIS_URL"].to_string(),
        server: PathBuf::from(vars["OUTBOUND_TEST_REDIS_SERVER"]),
    };
    assert_eq!(
        redis_cli(&env.url, &["PING"]),
        "PONG",
        "the test Redis at {} does not answer: run testenv/redis/server.sh start",
        env.url
    );
    env
}

fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .expect(
            "redis-cli (Debian redis-tools) must be installed: testenv/redis/server.sh install",
        );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The proxy in front of Postfix's submission port, and the DSN that sends through it.
struct Setup {
    env: TestEnv,
    proxy: Proxy,
    dsn: String,
}

async fn setup() -> Setup {
    let env = TestEnv::load();
    let proxy = Proxy::start(format!("{}:{}", env.host(), env.port_submission())).await;
    let dsn = format!(
        "smtp://{}:{}@127.0.0.1:{}?tls=starttls&ca_file={}&pool_size={POOL}&retries=2",
        env.user().replace('@', "%40"),
        env.password(),
        proxy.port,
        env.ca_file().display()
    );
    Setup { env, proxy, dsn }
}

impl Setup {
    /// The account id the shared limits use for this proxy's server and the test user.
    fn conn_key(&self) -> String {
        let id = outbound::limits::account_id(&[
            "smtp",
            "127.0.0.1",
            &self.proxy.port.to_string(),
            &self.env.user(),
        ]);
        format!("outbound:v1:conn:{{{id}}}:holders")
    }

    fn spawn(&self, limits: &str, extra: &[(&str, &str)], tag: &str, count: usize) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shared-limits-sender"));
        cmd.env_clear()
            .env("MAILER_DSN", &self.dsn)
            .env("MAIL_LIMITS_URL", limits)
            .args([
                tag,
                &count.to_string(),
                "6",
                &self.env.user(),
                &format!("bob@{}", self.env.domain()),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().expect("start shared-limits-sender")
    }

    fn ids(&self, tag: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("<{tag}-{i}@{}>", self.env.domain()))
            .collect()
    }
}

/// What one sending process reported.
struct Report {
    sent_at: Vec<u128>,
    stderr: String,
}

async fn finish(child: Child, name: &str) -> Report {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("failed")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "{name} exited {:?}; failures: {failed:?}\nstderr:\n{stderr}",
        out.status
    );
    let sent_at = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("sent "))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u128>()
                .unwrap()
        })
        .collect();
    Report { sent_at, stderr }
}

/// Every id delivered, and exactly once (checked again after a pause, for late duplicates).
fn delivered_exactly_once(env: &TestEnv, ids: &[String]) {
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(ids, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    // One more scan, then every id's files.
    let files = maildir.wait_for(ids, Duration::from_secs(1));
    let twice: Vec<&String> = ids.iter().filter(|id| files[*id].len() != 1).collect();
    assert!(
        twice.is_empty(),
        "{} messages were delivered more than once, e.g. {}",
        twice.len(),
        twice[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_with_a_pool_of_three_open_three_connections_between_them() {
    let _serial = SERIAL.lock().await;
    let redis = redis_env();
    let s = setup().await;
    let run = unique("shared-cap");
    // Enough that the run lasts several renewal periods (1 s: a holder keeps a fresh slot at
    // least that long while others wait), so "a turn in the first half" is a real test of
    // fairness at any sending speed: at 200 each the whole run took 2.6 s once a message cost
    // one write, and a fair queue could no longer show it.
    const PER_PROCESS: usize = 500;
    let started = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|p| s.spawn(&redis.url, &[], &format!("{run}-p{p}"), PER_PROCESS))
        .collect();
    let mut reports = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        reports.push(finish(child, &format!("process {p}")).await);
    }
    let took = started.elapsed();
    let all: Vec<String> = (0..4)
        .flat_map(|p| s.ids(&format!("{run}-p{p}"), PER_PROCESS))
        .collect();
    delivered_exactly_once(&s.env, &all);
    println!(
        "4 x {PER_PROCESS} messages in {:.1} s; {} connections opened, at most {} at once",
        took.as_secs_f64(),
        s.proxy.accepted(),
        s.proxy.max_open()
    );
    assert_eq!(
        reports.iter().map(|r| r.sent_at.len()).sum::<usize>(),
        4 * PER_PROCESS
    );
    assert!(
        s.proxy.max_open() <= POOL,
        "the proxy saw {} connections at once (cap {POOL}); timeline {:?}",
        s.proxy.max_open(),
        s.proxy.timeline()
    );
    assert!(s.proxy.max_open() >= 2, "the cap was never used");
    // No process starved: each one sent its first message before half of all were sent.
    let mut every: Vec<u128> = reports.iter().flat_map(|r| r.sent_at.clone()).collect();
    every.sort_unstable();
    let half = every[every.len() / 2];
    for (p, r) in reports.iter().enumerate() {
        let first = r.sent_at.iter().min().unwrap();
        assert!(*first <= half, "process {p} sent nothing in the first half");
    }
    // Nothing is left behind in Redis once they are done.
    assert_eq!(redis_cli(&redis.url, &["ZCARD", &s.conn_key()]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_rate() {
    let _serial = SERIAL.lock().await;
    let redis = redis_env();
    let s = setup().await;
    let run = unique("shared-rate");
    // 30/min scaled down: 20/s for 10 s, 200 messages from 4 processes.
    const PER_PROCESS: usize = 50;
    const RATE: f64 = 20.0;
    let children: Vec<_> = (0..4)
        .map(|p| {
            s.spawn(
                &redis.url,
                &[("MAIL_RATE", "20/s")],
                &format!("{run}-p{p}"),
                PER_PROCESS,
            )
        })
        .collect();
    let mut every = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        every.extend(finish(child, &format!("process {p}")).await.sent_at);
    }
    every.sort_unstable();
    let span = (every[every.len() - 1] - every[0]) as f64 / 1e6;
    let measured = (every.len() - 1) as f64 / span;
    println!(
        "{} messages over {span:.2} s: {measured:.2}/s (limit {RATE}/s); at most {} connections",
        every.len(),
        s.proxy.max_open()
    );
    assert_eq!(every.len(), 4 * PER_PROCESS);
    assert!(
        (measured - RATE).abs() <= RATE * 0.10,
        "aggregate rate {measured:.2}/s is not within 10% of {RATE}/s"
    );
    assert!(s.proxy.max_open() <= POOL);
    let all: Vec<String> = (0..4)
        .flat_map(|p| s.ids(&format!("{run}-p{p}"), PER_PROCESS))
        .collect();
    delivered_exactly_once(&s.env, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slots_of_a_killed_process_come_back_within_the_lease() {
    let _serial = SERIAL.lock().await;
    let redis = redis_env();
    let s = setup().await;
    let run = unique("shared-kill");
    const LEASE: f64 = 3.0;
    let limits = format!("{}?lease={LEASE}", redis.url);
    let key = s.conn_key();
    let mut holder = s.spawn(&limits, &[], &format!("{run}-a"), 100_000);
    // Until it holds every slot.
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_cli(&redis.url, &["ZCARD", &key]) != POOL.to_string() {
        assert!(
            Instant::now() < deadline,
            "the first process never held {POOL} slots"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.start_kill().unwrap(); // SIGKILL: nothing is given back
    holder.wait().await.unwrap();
    let killed_at = now_micros();
    // The slots outlive the process: nobody released them.
    assert_eq!(redis_cli(&redis.url, &["ZCARD", &key]), POOL.to_string());
    let other = s.spawn(&limits, &[], &format!("{run}-b"), 30);
    let report = finish(other, "the second process").await;
    let first = *report.sent_at.iter().min().unwrap();
    let waited = (first - killed_at) as f64 / 1e6;
    println!(
        "the second process sent its first message {waited:.2} s after the kill (lease {LEASE} s)"
    );
    assert!(
        waited <= LEASE + 1.0,
        "the slots came back after {waited:.2} s, more than the lease ({LEASE} s)"
    );
    assert!(
        waited >= 1.0,
        "the second process sent after {waited:.2} s: the dead process's slots were not held"
    );
    delivered_exactly_once(&s.env, &s.ids(&format!("{run}-b"), 30));
}

/// A private redis-server the test may stop and start again.
struct PrivateRedis {
    server: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start(server: PathBuf) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis {
            server,
            port,
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new(&self.server)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis_cli(&self.url(), &["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "the private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_mid_run_falls_back_and_then_holds_again() {
    let _serial = SERIAL.lock().await;
    let shared = redis_env();
    let s = setup().await;
    let mut redis = PrivateRedis::start(shared.server.clone());
    let run = unique("shared-restart");
    const PER_PROCESS: usize = 60;
    let limits = format!("{}?lease=3", redis.url());
    let children: Vec<_> = (0..4)
        .map(|p| {
            s.spawn(
                &limits,
                &[("MAIL_RATE", "10/s")],
                &format!("{run}-p{p}"),
                PER_PROCESS,
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop();
    let stopped = s.proxy.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    let restarted = s.proxy.elapsed();
    let restarted_at = now_micros();
    let mut reports = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        reports.push(finish(child, &format!("process {p}")).await);
    }
    let ended = s.proxy.elapsed();
    println!(
        "stopped at {:.1} s, restarted at {:.1} s, ended at {:.1} s; at most {} connections \
         during the outage, {} from 2.5 s after the restart",
        stopped.as_secs_f64(),
        restarted.as_secs_f64(),
        ended.as_secs_f64(),
        s.proxy.max_open(),
        s.proxy
            .max_open_since(restarted + Duration::from_millis(2500))
    );
    // No message lost or duplicated.
    let all: Vec<String> = (0..4)
        .flat_map(|p| s.ids(&format!("{run}-p{p}"), PER_PROCESS))
        .collect();
    delivered_exactly_once(&s.env, &all);
    // The documented fallback happened, loudly, and ended.
    for (p, r) in reports.iter().enumerate() {
        assert!(
            r.stderr.contains("SHARED LIMITS UNREACHABLE")
                && r.stderr.contains("per-process limits"),
            "process {p} did not warn about the fallback:\n{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("shared limits reachable again"),
            "process {p} did not notice Redis back:\n{}",
            r.stderr
        );
    }
    // The limits hold again after Redis returns: the cap from 2.5 s after the restart...
    assert!(
        ended > restarted + Duration::from_secs(4),
        "the run ended too soon after the restart to tell"
    );
    assert!(
        s.proxy
            .max_open_since(restarted + Duration::from_millis(2500))
            <= POOL,
        "more than {POOL} connections after Redis returned: {:?}",
        s.proxy.timeline()
    );
    // ... and the rate (within 15%: the window is short).
    let mut after: Vec<u128> = reports
        .iter()
        .flat_map(|r| r.sent_at.iter().copied())
        // From 3 s after the restart: each process leaves its per-process fallback when its
        // next probe finds Redis back, which took up to 2-3 s here (session 7 measured
        // 10.9-11.8/s from +2 s, on the code before and after issue 19, and 10.0-10.4/s from
        // +3 s).
        .filter(|t| *t >= restarted_at + 3_000_000)
        .collect();
    after.sort_unstable();
    let rate = (after.len() - 1) as f64 / ((after[after.len() - 1] - after[0]) as f64 / 1e6);
    println!(
        "{} messages after the restart at {rate:.2}/s (limit 10/s)",
        after.len()
    );
    assert!(
        after.len() >= 15,
        "too few messages after the restart to tell"
    );
    assert!(
        (rate - 10.0).abs() <= 1.5,
        "rate after the restart {rate:.2}/s, limit 10/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_shared_limits_and_wait_sends_nothing() {
    let _serial = SERIAL.lock().await;
    let redis = redis_env();
    let s = setup().await;
    let bin = outbound_live_tests::outbound_bin();
    let run = |limits: &str, fail: &str, args: &[&str]| {
        std::process::Command::new(&bin)
            .env_clear()
            .env("MAILER_DSN", &s.dsn)
            .env("MAIL_LIMITS_URL", limits)
            .env("MAIL_LIMITS_FAIL", fail)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&redis.url, "local", &["check"]);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shared limits: reachable"), "{stderr}");

    // Nothing listens on port 1: unreachable, reported, exit 75.
    let dead = "redis://:hunter2@127.0.0.1:1/?wait=1";
    let bad = run(dead, "local", &["check"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("shared limits: UNREACHABLE"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");

    // `outbound config` shows the URL, password redacted.
    let shown = run(dead, "wait", &["config"]);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        stdout.contains("redis://:********@127.0.0.1:1/?wait=1"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");

    // MAIL_LIMITS_FAIL=wait: waits about `wait` (per attempt: the DSN retries twice), then
    // fails temporarily; nothing reaches the server.
    let started = Instant::now();
    let sent = run(
        dead,
        "wait",
        &[
            "send",
            "--from",
            &s.env.user(),
            "--to",
            &format!("bob@{}", s.env.domain()),
            "--subject",
            "wait",
            "--text",
            "never sent",
        ],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(took >= Duration::from_secs(1), "did not wait: {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "waited {took:?}: unbounded?"
    );
    // The two checks verified (the second on the per-process fallback); the send connected to
    // nothing.
    assert_eq!(s.proxy.accepted(), 2, "the waiting send reached the server");
}
