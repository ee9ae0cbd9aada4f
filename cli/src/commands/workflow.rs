//! `kiln workflow start TEMPLATE [-d DATA] [--wait]`: submit a workflow
//! through a template (DESIGN §9); the template's values win over yours.
//! `kiln workflow show ID` is in [`super::workflow_show`].

use super::{wait, Ctx};
use crate::cli::{WorkflowCommand, WorkflowStartArgs};
use crate::error::CliError;
use crate::{input, output};
use kiln_shared::exit;
use kiln_shared::workflow::NewWorkflow;

pub async fn run(ctx: &Ctx, command: WorkflowCommand) -> Result<u8, CliError> {
    match command {
        WorkflowCommand::Start(args) => start(ctx, args).await,
        WorkflowCommand::Show { id } => super::workflow_show::run(ctx, id).await,
    }
}

async fn start(ctx: &Ctx, args: WorkflowStartArgs) -> Result<u8, CliError> {
    let task_data = args.data.map(|d| input::json_object("--data", &d)).transpose()?.unwrap_or_default();
    let new = NewWorkflow { template: args.template.clone(), task_data, priority: args.priority };
    let wr = ctx.api(ctx.client.create_workflow(&new)).await?;
    if !ctx.json {
        output::line(&format!(
            "started workflow {} ({} from template {}): {}",
            wr.id, wr.task_name, args.template, wr.status
        ))?;
    }
    if args.wait {
        return wait::follow(ctx, wr, args.timeout).await;
    }
    if ctx.json {
        output::json(&wr)?;
    }
    Ok(exit::SUCCESS)
}
