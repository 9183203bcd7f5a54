//! Outbound's live test suites (`publish = false`): the tests in `tests/` run the library and
//! the `outbound` binary against the real servers `testenv/` starts. See README.md.
//!
//! The only code here finds the `outbound` binary for the CLI tests. Cargo gives a package's
//! integration tests the path of its own binaries only (`CARGO_BIN_EXE_<name>`), and a
//! binary-only package cannot be a dependency on stable Cargo, so [`outbound_bin`] looks for
//! the binary Cargo built next to this test executable, and fails loudly when it is missing or
//! older than the sources.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Set to use that `outbound` binary instead of the one in the target directory.
pub const OUTBOUND_BIN: &str = "OUTBOUND_BIN";

/// The `outbound` binary to test: `$OUTBOUND_BIN` if set, else `<target>/<profile>/outbound`
/// found from this test executable (`<target>/<profile>/deps/<test>-<hash>`).
///
/// `cargo test --workspace` builds it before running any test (outbound-cli is then a tested
/// package). `cargo test -p outbound-live-tests` alone does not, so this panics, naming the
/// command to run, when the binary is missing or older than a source file of `outbound-cli` or
/// `outbound`: a CLI test never runs an old build.
pub fn outbound_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(OUTBOUND_BIN).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{OUTBOUND_BIN}={} does not exist",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        panic!("the test executable's path is unknown ({e}): set {OUTBOUND_BIN}")
    });
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or_else(|| {
        panic!(
            "{} is not in <target>/<profile>/deps: set {OUTBOUND_BIN}",
            exe.display()
        )
    });
    let bin = profile_dir.join(format!("outbound{}", std::env::consts::EXE_SUFFIX));
    const BUILD: &str = "run `cargo test --workspace`, which builds it, or `cargo build -p \
                         outbound-cli` (same profile) before `cargo test -p outbound-live-tests`";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "the outbound binary {} is not built ({e}): {BUILD}",
                bin.display()
            )
        });
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR")); // crates/outbound-live-tests
    let workspace = manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir);
    for src in ["crates/outbound-cli/src", "crates/outbound/src"] {
        if let Some((newer, _)) = newest_rs(&workspace.join(src)).filter(|(_, t)| *t > built) {
            panic!(
                "the outbound binary {} is older than {}: {BUILD}",
                bin.display(),
                newer.display()
            );
        }
    }
    bin
}

/// The most recently modified `.rs` file under `dir`, with its modification time.
fn newest_rs(dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_rs(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (path, t))
        } else {
            None
        };
        if let Some((p, t)) = found {
            if newest.as_ref().is_none_or(|(_, n)| t > *n) {
                newest = Some((p, t));
            }
        }
    }
    newest
}
