//! Helpers for the SMTP integration tests: the test environment's settings (written by
//! `testenv/smtp-servers.sh start`), the shared Maildir, Postfix's maillog, and the
//! fault-injection server `testenv/fault_smtpd.py`.
//!
//! A test that needs the servers panics with "test servers not running: run
//! testenv/smtp-servers.sh start" when they are missing: it never skips quietly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicU64, Ordering};

/// The variables of `$OUTBOUND_TESTENV_DIR/env` (default `/tmp/outbound-testenv/env`).
#[derive(Debug, Clone)]
pub struct TestEnv {
    vars: HashMap<String, String>,
}

const NOT_RUNNING: &str = "test servers not running: run testenv/smtp-servers.sh start";

impl TestEnv {
    /// Loads the environment file and checks that Postfix listens, or panics telling how to
    /// start the servers.
    pub fn load() -> TestEnv {
        let env = Self::load_file();
        // The servers must really be listening, or every test would fail confusingly.
        let addr = format!("{}:{}", env.host(), env.port_plain());
        if std::net::TcpStream::connect_timeout(
            &addr.parse().expect("OUTBOUND_TEST_SMTP_HOST/PORT"),
            Duration::from_secs(2),
        )
        .is_err()
        {
            panic!("{NOT_RUNNING} (nothing listens on {addr})");
        }
        env
    }

    /// Loads the environment file only (for tests that start their own fault server).
    pub fn load_file() -> TestEnv {
        let dir = std::env::var("OUTBOUND_TESTENV_DIR")
            .ok()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "/tmp/outbound-testenv".to_string());
        let path = Path::new(&dir).join("env");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{NOT_RUNNING} ({} unreadable: {e})", path.display()));
        let vars: HashMap<String, String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        TestEnv { vars }
    }

    pub fn get(&self, key: &str) -> String {
        self.vars
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{NOT_RUNNING} ({key} missing from the env file)"))
    }

    pub fn host(&self) -> String {
        self.get("OUTBOUND_TEST_SMTP_HOST")
    }
    pub fn port_plain(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_PLAIN").parse().unwrap()
    }
    pub fn port_submission(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_SUBMISSION").parse().unwrap()
    }
    pub fn port_smtps(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_SMTPS").parse().unwrap()
    }
    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_CA_FILE"))
    }
    pub fn maildir(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_MAILDIR"))
    }
    pub fn maillog(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_MAILLOG"))
    }
    pub fn domain(&self) -> String {
        self.get("OUTBOUND_TEST_DOMAIN")
    }
    pub fn reject_rcpt(&self) -> String {
        self.get("OUTBOUND_TEST_REJECT_RCPT")
    }
    pub fn user(&self) -> String {
        self.get("OUTBOUND_TEST_USER")
    }
    pub fn password(&self) -> String {
        self.get("OUTBOUND_TEST_PASSWORD")
    }
    pub fn python(&self) -> String {
        self.get("OUTBOUND_TEST_PYTHON")
    }
    pub fn fault_smtpd(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_FAULT_SMTPD"))
    }
}

/// A token no other test run produces (time, process id, counter).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{nanos:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// CRLF to LF (Maildir files use LF line ends).
pub fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The shared Maildir, indexed by Message-ID. Files are read once; `scan` picks up new ones.
pub struct Maildir {
    root: PathBuf,
    seen: HashSet<PathBuf>,
    by_id: HashMap<String, Vec<PathBuf>>,
}

impl Maildir {
    pub fn new(root: PathBuf) -> Self {
        Maildir {
            root,
            seen: HashSet::new(),
            by_id: HashMap::new(),
        }
    }

    /// Every message file (new/ and cur/).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.root.join(sub)) {
                out.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        out
    }

    pub fn count_files(&self) -> usize {
        self.files().len()
    }

    /// Reads files not seen yet and indexes them by their Message-ID header.
    pub fn scan(&mut self) {
        for path in self.files() {
            if self.seen.contains(&path) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // moved from new/ to cur/ meanwhile: picked up next scan
            };
            self.seen.insert(path.clone());
            if let Some(id) = header_value(&bytes, "message-id") {
                self.by_id.entry(id).or_default().push(path);
            }
        }
    }

    /// Waits until every id in `ids` has been delivered at least once; returns the files per id.
    pub fn wait_for(&mut self, ids: &[String], timeout: Duration) -> HashMap<String, Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.scan();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !self.by_id.contains_key(*id))
                .collect();
            if missing.is_empty() {
                return ids
                    .iter()
                    .map(|id| (id.clone(), self.by_id[id].clone()))
                    .collect();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {} messages never reached the Maildir {} (first: {})",
                    missing.len(),
                    ids.len(),
                    self.root.display(),
                    missing[0]
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The files currently holding `id`.
    pub fn files_for(&mut self, id: &str) -> Vec<PathBuf> {
        self.scan();
        self.by_id.get(id).cloned().unwrap_or_default()
    }
}

/// The first value of header `name` (case-insensitive) in the header section, unfolded.
pub fn header_value(bytes: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek() {
                    if next.starts_with([' ', '\t']) {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
    }
    None
}

/// Every `Delivered-To:` header of a delivered file.
pub fn delivered_to(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("Delivered-To:"))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The part of Postfix's maillog written after `start` was taken.
pub struct Maillog {
    path: PathBuf,
    offset: u64,
}

/// One smtpd session in the maillog.
#[derive(Debug, Clone, Default)]
pub struct SmtpdSession {
    pub service: String,
    pub pid: String,
    pub connect_line: usize,
    pub disconnect_line: Option<usize>,
    pub queue_ids: Vec<String>,
    pub disconnect_stats: String,
    /// `SASL ... authentication failed` warnings logged during the session.
    pub auth_failures: usize,
}

impl Maillog {
    pub fn start(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Maillog { path, offset }
    }

    pub fn lines(&self) -> Vec<String> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let from = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `(service, pid, message)` of a Postfix log line, e.g.
    /// `Nov 21 13:51:20 localhost postfix/submission/smtpd[6477]: connect from ...`.
    fn split(line: &str) -> Option<(String, String, String)> {
        let start = line.find("postfix/")?;
        let rest = &line[start..];
        let open = rest.find('[')?;
        let close = rest.find("]: ")?;
        Some((
            rest[..open].to_string(),
            rest[open + 1..close].to_string(),
            rest[close + 3..].to_string(),
        ))
    }

    /// Every smtpd session (connect .. disconnect) in the window, with the queue ids it
    /// created.
    pub fn sessions(&self) -> Vec<SmtpdSession> {
        let mut open: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<SmtpdSession> = Vec::new();
        for (n, line) in self.lines().iter().enumerate() {
            let Some((service, pid, msg)) = Self::split(line) else {
                continue;
            };
            if !service.ends_with("/smtpd") {
                continue;
            }
            let key = (service.clone(), pid.clone());
            if msg.starts_with("connect from ") {
                open.insert(key, out.len());
                out.push(SmtpdSession {
                    service,
                    pid,
                    connect_line: n,
                    ..SmtpdSession::default()
                });
            } else if msg.starts_with("disconnect from ") {
                if let Some(i) = open.remove(&key) {
                    out[i].disconnect_line = Some(n);
                    out[i].disconnect_stats = msg.clone();
                }
            } else if msg.contains("authentication failed") {
                if let Some(&i) = open.get(&key) {
                    out[i].auth_failures += 1;
                }
            } else if let Some((qid, rest)) = msg.split_once(": ") {
                if rest.starts_with("client=") {
                    if let Some(&i) = open.get(&key) {
                        out[i].queue_ids.push(qid.to_string());
                    }
                }
            }
        }
        out
    }

    /// Queue id -> Message-ID, from cleanup's `message-id=<...>` lines.
    pub fn message_ids(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for line in self.lines() {
            let Some((service, _, msg)) = Self::split(&line) else {
                continue;
            };
            if !service.ends_with("/cleanup") {
                continue;
            }
            if let Some((qid, rest)) = msg.split_once(": ") {
                if let Some(id) = rest.strip_prefix("message-id=") {
                    out.insert(qid.to_string(), id.trim().to_string());
                }
            }
        }
        out
    }
}

/// The most sessions open at the same time, by log order (connect +1, disconnect -1).
pub fn max_overlap(sessions: &[&SmtpdSession]) -> usize {
    let mut events: Vec<(usize, i32)> = Vec::new();
    for s in sessions {
        events.push((s.connect_line, 1));
        events.push((s.disconnect_line.unwrap_or(usize::MAX), -1));
    }
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// `testenv/fault_smtpd.py` running in one mode on a free port.
pub struct FaultServer {
    child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl FaultServer {
    /// Starts `fault_smtpd.py --mode MODE --port 0` and waits for its `READY <port>` line.
    pub fn start(env: &TestEnv, mode: &str, extra: &[&str]) -> FaultServer {
        use std::io::{BufRead, BufReader};
        let script = env.fault_smtpd();
        assert!(
            script.exists(),
            "{NOT_RUNNING} ({} does not exist)",
            script.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fault.log");
        let mut child = std::process::Command::new(env.python())
            .arg(&script)
            .args(["--mode", mode, "--port", "0", "--log"])
            .arg(&log)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(port) = line.trim().strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("fault_smtpd.py --mode {mode} did not print READY <port>: {other:?}");
            }
        };
        FaultServer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's log events (one JSON object per line).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Events of kind `event` (`connect`, `cmd`, `data-end`, `message`, ...).
    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == event).count()
    }

    /// Every command line the client sent (outside DATA).
    pub fn commands(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "cmd")
            .map(|e| e["line"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
