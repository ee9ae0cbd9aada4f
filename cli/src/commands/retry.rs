//! `kiln retry ID`: run a failed, errored or aborted request again (same id,
//! next attempt); dependents aborted because of it are restored.

use super::Ctx;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;

pub async fn run(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let wr = ctx.api(ctx.client.work_request_action(id, "retry")).await?;
    if ctx.json {
        output::json(&wr)?;
    } else {
        output::line(&format!("work request {}: {} (attempt {})", wr.id, wr.status, wr.attempt))?;
    }
    Ok(exit::SUCCESS)
}
