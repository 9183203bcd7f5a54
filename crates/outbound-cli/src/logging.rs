//! Logs: `tracing` to stderr. Level from -v/-vv/-vvv, else OUTBOUND_LOG (an env-filter
//! directive such as `debug` or `outbound=trace`), else `warn`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable that sets the log filter.
pub const ENV_VAR: &str = "OUTBOUND_LOG";

/// Installs the subscriber. Never fails: a bad OUTBOUND_LOG falls back to `warn` with a note.
pub fn init(verbose: u8) {
    let mut bad_filter = None;
    let filter = match verbose {
        0 => match std::env::var(ENV_VAR) {
            Ok(spec) if !spec.trim().is_empty() => {
                EnvFilter::try_new(spec.trim()).unwrap_or_else(|e| {
                    bad_filter = Some(e.to_string());
                    EnvFilter::new("warn")
                })
            }
            _ => EnvFilter::new("warn"),
        },
        1 => EnvFilter::new("warn,outbound=info"),
        2 => EnvFilter::new("warn,outbound=debug"),
        _ => EnvFilter::new("trace"),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, bad_filter) {
        tracing::warn!("{ENV_VAR} is not a valid log filter ({e}); using `warn`");
    }
}
