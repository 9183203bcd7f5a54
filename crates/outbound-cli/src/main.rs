//! `outbound`: send transactional email and diagnose a mail setup. A thin layer over the
//! `outbound` library: parse the command line, run one command, exit with a sysexits code.

mod cli;
mod commands;
mod exit;
mod load;
mod logging;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use crate::cli::Cli;
use crate::exit::Failure;

fn main() -> ExitCode {
    ExitCode::from(run(std::env::args_os().collect()))
}

fn run(args: Vec<OsString>) -> u8 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e, wants_json(&args)),
    };
    logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::err(format_args!("cannot start the async runtime: {e}"));
            return exit::SOFTWARE;
        }
    };
    runtime.block_on(commands::dispatch(cli.command))
}

/// --help and --version exit 0; every other command-line error exits 64 (EX_USAGE), not
/// clap's 2. With --json the error is also reported as one JSON object on stdout.
fn clap_error(err: &clap::Error, json: bool) -> u8 {
    if !err.use_stderr() {
        let _ = err.print();
        return exit::OK;
    }
    if json {
        // clap's own first line, e.g. "unexpected argument '--bogus' found".
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first).trim();
        let failure = Failure::Usage(if message.is_empty() {
            "invalid command line; see --help".to_string()
        } else {
            message.to_string()
        });
        output::json(&json!({
            "status": "failed",
            "error": output::error_object(&failure),
            "exit_code": exit::USAGE,
        }));
    }
    let _ = err.print();
    exit::USAGE
}

/// Whether `--json` appears among the options (before a `--`).
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}
