//! `kiln`: the command line for Kiln's users and operators (DESIGN §8). It
//! drives the coordinator's REST API v1 through the typed client of
//! `kiln-shared`; each subcommand is one module under [`commands`].

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod input;
pub mod output;
pub mod progress;

use cli::{Cli, Command};
use commands::Ctx;
use error::CliError;

/// Run a parsed command line; `Ok` holds the exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    // Commands that need no coordinator.
    match &cli.command {
        Command::Completions(args) => return commands::completions::run(args),
        Command::Manpage(args) => return commands::manpage::run(args),
        _ => {}
    }
    let ctx = Ctx::new(&cli.global)?;
    commands::dispatch(&ctx, cli.command).await
}
