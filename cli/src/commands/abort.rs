//! `kiln abort ID`: abort a work request; the coordinator tells its agent
//! to stop it within seconds, and blocked dependents are aborted too.

use super::Ctx;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;

pub async fn run(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let wr = ctx.api(ctx.client.work_request_action(id, "abort")).await?;
    if ctx.json {
        output::json(&wr)?;
    } else {
        output::line(&format!("work request {}: {}", wr.id, wr.status))?;
    }
    Ok(exit::SUCCESS)
}
