use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match kiln::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is usage.
            let code = if e.use_stderr() { kiln_shared::exit::USAGE } else { kiln_shared::exit::SUCCESS };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln: failed to start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(kiln::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json {
                eprintln!("{}", serde_json::json!({"error": e.kind(), "message": e.to_string()}));
            } else {
                eprintln!("kiln: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
