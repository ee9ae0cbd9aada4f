//! kiln-coordinator: the thin, restartable centre of Kiln. It stores work
//! requests and artifacts, authenticates callers, matches pending work to
//! agents and drives the DAG; it never runs user-controlled code.

pub mod api;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dag;
pub mod files;
pub mod scheduler;
pub mod server;
pub mod server_tasks;
pub mod state;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod workflows;

use cli::{Cli, Command};

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Manpage = cli.command {
        let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
        page.render(&mut std::io::stdout())?;
        return Ok(());
    }
    let config = commands::load_config(&cli)?;
    match cli.command {
        Command::Serve(args) => commands::serve::run(config, args).await,
        Command::Token(cmd) => commands::token::run(&commands::open_store(&config)?, cmd),
        Command::Worker(cmd) => commands::worker::run(&commands::open_store(&config)?, cmd),
        Command::Key(cmd) => commands::key::run(&commands::open_store(&config)?, cmd),
        Command::Manpage => Ok(()),
        Command::ValidateConfig => {
            config.validate()?;
            // Read the certificate and key too: a bad file should stop
            // `ExecStartPre=… validate-config`, not the first handshake.
            match config.tls_files()? {
                Some(files) => {
                    files.load()?;
                }
                None if !config.listen.ip().is_loopback() => {
                    eprintln!("warning: {}", commands::serve::CLEARTEXT_WARNING);
                }
                None => {}
            }
            eprintln!("configuration is valid");
            Ok(())
        }
    }
}
