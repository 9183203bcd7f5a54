//! The test environment's settings: the `env` file `testenv/smtp-servers.sh start` writes into
//! its state directory, and unique tokens to find one test's messages among everyone's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variables of `$OUTBOUND_TESTENV_DIR/env` (default `/tmp/outbound-testenv/env`).
#[derive(Debug, Clone)]
pub struct TestEnv {
    vars: HashMap<String, String>,
}

/// How every helper that needs the servers starts its panic message.
pub const NOT_RUNNING: &str = "test servers not running: run testenv/smtp-servers.sh start";

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

    /// The state directory: `$OUTBOUND_TESTENV_DIR`, default `/tmp/outbound-testenv`.
    pub fn state_dir() -> PathBuf {
        std::env::var("OUTBOUND_TESTENV_DIR")
            .ok()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "/tmp/outbound-testenv".to_string())
            .into()
    }

    /// Loads the environment file only (for tests that start their own fault server).
    pub fn load_file() -> TestEnv {
        crate::trace::trace_to_file();
        let path = Self::state_dir().join("env");
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

    /// The value of `key`, or a panic saying the servers are not running.
    pub fn get(&self, key: &str) -> String {
        self.vars
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{NOT_RUNNING} ({key} missing from the env file)"))
    }

    /// `OUTBOUND_TEST_SMTP_HOST`: the address Postfix listens on (`127.0.0.1`).
    pub fn host(&self) -> String {
        self.get("OUTBOUND_TEST_SMTP_HOST")
    }
    /// `OUTBOUND_TEST_PORT_PLAIN`: port 25, STARTTLS optional.
    pub fn port_plain(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_PLAIN").parse().unwrap()
    }
    /// `OUTBOUND_TEST_PORT_SUBMISSION`: port 587, STARTTLS required.
    pub fn port_submission(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_SUBMISSION").parse().unwrap()
    }
    /// `OUTBOUND_TEST_PORT_SMTPS`: port 465, implicit TLS.
    pub fn port_smtps(&self) -> u16 {
        self.get("OUTBOUND_TEST_PORT_SMTPS").parse().unwrap()
    }
    /// `OUTBOUND_TEST_CA_FILE`: the CA that signed the servers' certificate.
    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_CA_FILE"))
    }
    /// `OUTBOUND_TEST_MAILDIR`: the Maildir every delivered message lands in.
    pub fn maildir(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_MAILDIR"))
    }
    /// `OUTBOUND_TEST_MAILLOG`: Postfix's log file.
    pub fn maillog(&self) -> PathBuf {
        PathBuf::from(self.get("OUTBOUND_TEST_MAILLOG"))
    }
    /// `OUTBOUND_TEST_DOMAIN`: the domain Postfix delivers (`example.test`).
    pub fn domain(&self) -> String {
        self.get("OUTBOUND_TEST_DOMAIN")
    }
    /// `OUTBOUND_TEST_REJECT_RCPT`: a recipient Postfix refuses at RCPT.
    pub fn reject_rcpt(&self) -> String {
        self.get("OUTBOUND_TEST_REJECT_RCPT")
    }
    /// `OUTBOUND_TEST_USER`: the first SASL user (alice).
    pub fn user(&self) -> String {
        self.get("OUTBOUND_TEST_USER")
    }
    /// `OUTBOUND_TEST_PASSWORD`: the first SASL user's password.
    pub fn password(&self) -> String {
        self.get("OUTBOUND_TEST_PASSWORD")
    }
    /// `OUTBOUND_TEST_PYTHON`: a python3 that has aiosmtpd.
    pub fn python(&self) -> String {
        self.get("OUTBOUND_TEST_PYTHON")
    }
    /// `OUTBOUND_TEST_FAULT_SMTPD`: the path of `testenv/fault_smtpd.py`.
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
