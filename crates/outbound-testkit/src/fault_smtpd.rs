//! The scriptable fault-injection server `testenv/fault_smtpd.py` (aiosmtpd), one process per
//! test on a free loopback port.

use std::path::PathBuf;
use std::time::Duration;

use crate::testenv::{TestEnv, NOT_RUNNING};

/// `testenv/fault_smtpd.py` running in one mode on a free port.
pub struct FaultServer {
    child: std::process::Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its log, one JSON object per line (see testenv/README.md).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl FaultServer {
    /// Starts `fault_smtpd.py --mode MODE --port 0` and waits for its `READY <port>` line.
    /// The script of this checkout is used when it exists (its modes match these tests, even
    /// when the env file was written by another checkout), else the env file's.
    pub fn start(env: &TestEnv, mode: &str, extra: &[&str]) -> FaultServer {
        use std::io::{BufRead, BufReader};
        let own =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/fault_smtpd.py");
        let script = if own.exists() { own } else { env.fault_smtpd() };
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
