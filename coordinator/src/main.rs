use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kiln_coordinator::cli::Cli::parse();
    kiln_shared::systemd::init_logging("kiln-coordinator");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln-coordinator: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kiln_coordinator::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
