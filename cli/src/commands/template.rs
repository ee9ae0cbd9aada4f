//! `kiln template list|show|put`: workflow templates (DESIGN §9).

use super::Ctx;
use crate::cli::TemplateCommand;
use crate::error::CliError;
use crate::input;
use crate::output::{self, Table};
use kiln_shared::exit;
use kiln_shared::workflow::{WorkflowTemplate, WorkflowTemplateSpec};
use serde_json::Value;

pub async fn run(ctx: &Ctx, command: TemplateCommand) -> Result<u8, CliError> {
    match command {
        TemplateCommand::List => list(ctx).await,
        TemplateCommand::Show { name } => {
            let template = ctx.api(ctx.client.workflow_template(&name)).await?;
            print_one(ctx, &template)
        }
        TemplateCommand::Put { name, spec } => {
            let spec = input::json_object("--spec", &spec)?;
            let spec: WorkflowTemplateSpec = serde_json::from_value(Value::Object(spec))
                .map_err(|e| CliError::usage(format!("--spec: not a workflow template: {e}")))?;
            let template = ctx.api(ctx.client.put_workflow_template(&name, &spec)).await?;
            print_one(ctx, &template)
        }
    }
}

async fn list(ctx: &Ctx) -> Result<u8, CliError> {
    let page = ctx.api(ctx.client.workflow_templates()).await?;
    if ctx.json {
        output::json(&page)?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "WORKFLOW", "MERGE", "PRIORITY", "UPDATED"]);
    for t in &page.items {
        table.row(vec![
            t.name.clone(),
            t.task_name.clone(),
            t.merge.as_str().to_owned(),
            t.priority.to_string(),
            output::time(Some(t.updated_at)),
        ]);
    }
    table.print()?;
    Ok(exit::SUCCESS)
}

fn print_one(ctx: &Ctx, t: &WorkflowTemplate) -> Result<u8, CliError> {
    if ctx.json {
        output::json(t)?;
        return Ok(exit::SUCCESS);
    }
    output::line(&output::fields(&[
        ("name", t.name.clone()),
        ("workflow", t.task_name.clone()),
        ("merge", t.merge.as_str().to_owned()),
        ("priority", t.priority.to_string()),
        ("task_data", Value::Object(t.task_data.clone()).to_string()),
        ("allowed", Value::Object(t.allowed.clone()).to_string()),
        ("updated", output::time(Some(t.updated_at))),
    ]))?;
    Ok(exit::SUCCESS)
}
