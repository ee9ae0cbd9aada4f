//! `kiln token revoke NAME` (admin). Tokens are created on the
//! coordinator's host (`kiln-coordinator token create`), never over the API.

use super::Ctx;
use crate::cli::TokenCommand;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;

pub async fn run(ctx: &Ctx, command: TokenCommand) -> Result<u8, CliError> {
    match command {
        TokenCommand::Revoke { name } => {
            ctx.api(ctx.client.revoke_token(&name)).await?;
            if ctx.json {
                output::json(&serde_json::json!({"name": name, "status": "revoked"}))?;
            } else {
                output::line(&format!("token {name}: revoked"))?;
            }
        }
    }
    Ok(exit::SUCCESS)
}
