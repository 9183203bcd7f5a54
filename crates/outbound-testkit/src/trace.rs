//! Every library event of a test run, at TRACE, into a file, so `scripts/scan-secrets` can
//! prove that no canary secret reaches a log anywhere in the suite (not only in the tests
//! written to look for one).
//!
//! Only when `OUTBOUND_TEST_TRACE_DIR` is set (`scripts/test` sets it): each test binary then
//! appends to `DIR/<binary>-<pid>.log`. [`TestEnv::load`](crate::TestEnv::load) calls
//! [`trace_to_file`], so every test that uses the servers is covered. A test that installs its
//! own scoped subscriber (to assert on what it captured) takes over within its scope.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The variable naming the directory the trace files go to.
pub const TRACE_DIR_VAR: &str = "OUTBOUND_TEST_TRACE_DIR";

struct SharedFile(&'static Mutex<File>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => f.write(buf),
            Err(poisoned) => poisoned.into_inner().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(poisoned) => poisoned.into_inner().flush(),
        }
    }
}

/// Installs, once per process, a global TRACE subscriber writing to a file under
/// `$OUTBOUND_TEST_TRACE_DIR`; does nothing when the variable is unset.
pub fn trace_to_file() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let Some(dir) = std::env::var_os(TRACE_DIR_VAR).map(PathBuf::from) else {
            return;
        };
        std::fs::create_dir_all(&dir).unwrap();
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".into());
        let path = dir.join(format!("{binary}-{}.log", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let file: &'static Mutex<File> = Box::leak(Box::new(Mutex::new(file)));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || SharedFile(file))
            .finish();
        // Another global subscriber already set (by the test itself) keeps precedence.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
