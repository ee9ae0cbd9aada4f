//! `kiln artifact upload|download|list|show`.

mod download;
mod import_dsc;
mod list;
mod show;
mod upload;

use super::Ctx;
use crate::cli::ArtifactCommand;
use crate::error::CliError;

pub async fn run(ctx: &Ctx, command: ArtifactCommand) -> Result<u8, CliError> {
    match command {
        ArtifactCommand::Upload(args) => upload::run(ctx, args).await,
        ArtifactCommand::Download(args) => download::run(ctx, args).await,
        ArtifactCommand::List(args) => list::run(ctx, args).await,
        ArtifactCommand::Show { id } => show::run(ctx, id).await,
        ArtifactCommand::ImportDsc { dsc } => import_dsc::run(ctx, &dsc).await,
    }
}
