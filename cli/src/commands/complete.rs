//! `kiln complete ID --result R`: complete a `wait` task by hand (for
//! example an external approval).

use super::Ctx;
use crate::cli::{CompleteArgs, ResultArg};
use crate::error::CliError;
use crate::{input, output};
use kiln_shared::exit;
use kiln_shared::work::Completion;
use kiln_shared::WorkResult;

pub async fn run(ctx: &Ctx, args: CompleteArgs) -> Result<u8, CliError> {
    let output_data = args.output_data.map(|d| input::json_object("--output-data", &d)).transpose()?;
    let completion = Completion { result: result(args.result), attempt: None, output_data };
    let wr = ctx.api(ctx.client.complete(args.id, &completion)).await?;
    if ctx.json {
        output::json(&wr)?;
    } else {
        output::line(&format!("work request {}: {} {}", wr.id, wr.status, output::opt(wr.result)))?;
    }
    Ok(exit::SUCCESS)
}

fn result(arg: ResultArg) -> WorkResult {
    match arg {
        ResultArg::Success => WorkResult::Success,
        ResultArg::Failure => WorkResult::Failure,
        ResultArg::Error => WorkResult::Error,
        ResultArg::Skipped => WorkResult::Skipped,
    }
}
