//! `kiln depend ID --on DEP...`: add dependencies before a request starts.

use super::Ctx;
use crate::cli::DependArgs;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;

pub async fn run(ctx: &Ctx, args: DependArgs) -> Result<u8, CliError> {
    let wr = ctx.api(ctx.client.add_dependencies(args.id, &args.on)).await?;
    if ctx.json {
        output::json(&wr)?;
    } else {
        let deps = wr.dependencies.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        output::line(&format!("work request {}: {}, depends on {deps}", wr.id, wr.status))?;
    }
    Ok(exit::SUCCESS)
}
