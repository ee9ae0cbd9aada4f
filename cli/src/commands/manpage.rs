//! `kiln manpage`: the man page (roff) generated from the clap definitions;
//! with `--dir`, kiln.1 plus one page per subcommand (kiln-submit.1, ...).

use crate::cli::{Cli, ManpageArgs};
use crate::error::CliError;
use clap::CommandFactory;
use kiln_shared::exit;

pub fn run(args: &ManpageArgs) -> Result<u8, CliError> {
    let command = Cli::command();
    if let Some(dir) = &args.dir {
        let write_err = |source| CliError::WriteFile { path: dir.clone(), source };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        clap_mangen::generate_to(command, dir).map_err(write_err)?;
        return Ok(exit::SUCCESS);
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(|source| CliError::WriteFile { path: "standard output".into(), source })?;
    crate::output::raw(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}
