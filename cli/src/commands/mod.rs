//! One module per subcommand, each a short function from parsed arguments
//! to an exit code.

pub mod abort;
pub mod artifact;
pub mod complete;
pub mod completions;
pub mod depend;
pub mod health;
pub mod list;
pub mod logs;
pub mod manpage;
pub mod metrics;
pub mod retry;
pub mod show;
pub mod submit;
pub mod template;
pub mod token;
pub mod wait;
pub mod workers;
pub mod workflow;
pub mod workflow_show;

use crate::cli::{Command, GlobalArgs};
use crate::config;
use crate::error::CliError;
use kiln_shared::client::{Client, ClientError};
use std::future::Future;

/// What every command that talks to the coordinator shares.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub json: bool,
    pub quiet: bool,
    has_token: bool,
}

impl Ctx {
    pub fn new(global: &GlobalArgs) -> Result<Self, CliError> {
        let settings = config::resolve(global)?;
        let has_token = settings.token.is_some();
        let client = Client::with_ca_certificate(&settings.server, settings.token, settings.ca_certificate.as_deref())
            .map_err(|e| CliError::from_client(e, has_token))?;
        Ok(Ctx { client, json: global.json, quiet: global.quiet || global.json, has_token })
    }

    /// Await a client call, turning its error into a one-line [`CliError`].
    pub async fn api<T>(&self, call: impl Future<Output = Result<T, ClientError>>) -> Result<T, CliError> {
        call.await.map_err(|e| self.error(e))
    }

    pub fn error(&self, e: ClientError) -> CliError {
        CliError::from_client(e, self.has_token)
    }
}

/// Run one command that needs the coordinator.
pub async fn dispatch(ctx: &Ctx, command: Command) -> Result<u8, CliError> {
    match command {
        Command::Submit(args) => submit::run(ctx, args).await,
        Command::Wait(args) => wait::run(ctx, args).await,
        Command::Show(args) => show::run(ctx, args.id).await,
        Command::List(args) => list::run(ctx, args).await,
        Command::Abort(args) => abort::run(ctx, args.id).await,
        Command::Retry(args) => retry::run(ctx, args.id).await,
        Command::Complete(args) => complete::run(ctx, args).await,
        Command::Depend(args) => depend::run(ctx, args).await,
        Command::Logs(args) => logs::run(ctx, args).await,
        Command::Workers(args) => workers::run(ctx, args.command).await,
        Command::Workflow(cmd) => workflow::run(ctx, cmd).await,
        Command::Template(cmd) => template::run(ctx, cmd).await,
        Command::Artifact(cmd) => artifact::run(ctx, cmd).await,
        Command::Token(cmd) => token::run(ctx, cmd).await,
        Command::Health => health::run(ctx).await,
        Command::Metrics => metrics::run(ctx).await,
        Command::Completions(args) => completions::run(&args),
        Command::Manpage(args) => manpage::run(&args),
    }
}
