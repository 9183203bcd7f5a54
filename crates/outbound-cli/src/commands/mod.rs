//! One module per command. Each `run` prints its own output and returns the exit code.

pub mod bulk;
pub mod check;
pub mod config;
pub mod send;
pub mod token;
pub mod types;

use crate::cli::Command;

/// Runs the command and returns the exit code.
pub async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Send(args) => send::run(*args).await,
        Command::Check(args) => check::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Config(args) => config::run(args),
        Command::Bulk(args) => bulk::run(*args).await,
        Command::Types(args) => types::run(args),
    }
}
