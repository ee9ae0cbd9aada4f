use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kiln_agent::cli::Cli::parse();
    kiln_shared::systemd::init_logging("kiln-agent");
    match kiln_agent::commands::dispatch(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("kiln-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
