//! `kiln submit TYPE NAME [--data JSON|@FILE|-] [--dep ID]... [--wait]`.

use super::{wait, Ctx};
use crate::cli::{SubmitArgs, TaskTypeArg};
use crate::error::CliError;
use crate::{input, output};
use kiln_shared::exit;
use kiln_shared::work::NewWorkRequest;
use kiln_shared::TaskType;

pub async fn run(ctx: &Ctx, args: SubmitArgs) -> Result<u8, CliError> {
    let object = |flag: &str, arg: Option<String>| arg.map(|a| input::json_object(flag, &a)).transpose();
    let new = NewWorkRequest {
        task_type: task_type(args.task_type),
        task_name: args.task_name,
        task_data: object("--data", args.data)?.unwrap_or_default(),
        dependencies: args.deps,
        priority: args.priority,
        workflow_data: object("--workflow-data", args.workflow_data)?.unwrap_or_default(),
        parent: args.parent,
    };
    let wr = ctx.api(ctx.client.create_work_request(&new)).await?;
    if !ctx.json {
        output::line(&format!("created work request {} ({} {}): {}", wr.id, wr.task_type, wr.task_name, wr.status))?;
    }
    if args.wait {
        return wait::follow(ctx, wr, args.timeout).await;
    }
    if ctx.json {
        output::json(&wr)?;
    }
    Ok(exit::SUCCESS)
}

pub fn task_type(arg: TaskTypeArg) -> TaskType {
    match arg {
        TaskTypeArg::Worker => TaskType::Worker,
        TaskTypeArg::Server => TaskType::Server,
        TaskTypeArg::Internal => TaskType::Internal,
        TaskTypeArg::Workflow => TaskType::Workflow,
        TaskTypeArg::Signing => TaskType::Signing,
        TaskTypeArg::Wait => TaskType::Wait,
    }
}
