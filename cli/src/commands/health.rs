//! `kiln health`: does the coordinator answer? (Needs no token.)

use super::Ctx;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;

pub async fn run(ctx: &Ctx) -> Result<u8, CliError> {
    let health = ctx.api(ctx.client.health()).await?;
    if ctx.json {
        output::json(&health)?;
    } else {
        output::line(&format!("{}: {}", ctx.client.base_url(), health.status))?;
    }
    Ok(exit::SUCCESS)
}
