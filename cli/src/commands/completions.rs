//! `kiln completions SHELL`: a completion script generated from the clap
//! definitions, e.g. `kiln completions bash > /etc/bash_completion.d/kiln`.

use crate::cli::{Cli, CompletionsArgs};
use crate::error::CliError;
use clap::CommandFactory;
use kiln_shared::exit;

pub fn run(args: &CompletionsArgs) -> Result<u8, CliError> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "kiln", &mut out);
    crate::output::raw(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}
