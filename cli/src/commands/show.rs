//! `kiln show ID`: one work request, as fields and an attempts table.

use super::Ctx;
use crate::error::CliError;
use crate::output::{self, Table};
use kiln_shared::exit;
use kiln_shared::work::WorkRequest;
use serde_json::{Map, Value};

pub async fn run(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let wr = ctx.api(ctx.client.work_request(id)).await?;
    if ctx.json {
        output::json(&wr)?;
    } else {
        output::line(&render(&wr))?;
    }
    Ok(exit::SUCCESS)
}

fn compact(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        "{}".to_owned()
    } else {
        Value::Object(map.clone()).to_string()
    }
}

fn ids(ids: &[i64]) -> String {
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// The human view of a work request.
pub fn render(wr: &WorkRequest) -> String {
    let mut status = wr.status.to_string();
    if let Some(result) = wr.result {
        status.push_str(&format!(" ({result})"));
    }
    if let Some(reason) = &wr.abort_reason {
        status.push_str(&format!(" ({reason})"));
    }
    let mut text = output::fields(&[
        ("id", wr.id.to_string()),
        ("task", format!("{} {}", wr.task_type, wr.task_name)),
        ("status", status),
        ("worker", output::opt(wr.worker.as_deref())),
        ("attempt", format!("{} ({} automatic retries left)", wr.attempt, wr.retries_left)),
        ("priority", format!("{} + {}", wr.priority_base, wr.priority_adjustment)),
        ("parent", output::opt(wr.parent)),
        ("dependencies", ids(&wr.dependencies)),
        ("backend", output::opt(wr.resolved_backend.as_deref())),
        ("created", format!("{} by {}", output::time(Some(wr.created_at)), output::opt(wr.created_by.as_deref()))),
        ("started", output::time(wr.started_at)),
        ("completed", output::time(wr.completed_at)),
        ("task_data", compact(&wr.task_data)),
        ("workflow_data", compact(&wr.workflow_data)),
        ("output_data", compact(&wr.output_data)),
    ]);
    if !wr.attempts.is_empty() {
        let mut table = Table::new(&["ATTEMPT", "WORKER", "STARTED", "COMPLETED", "RESULT", "ABORT"]);
        for a in &wr.attempts {
            table.row(vec![
                a.attempt.to_string(),
                output::opt(a.worker.as_deref()),
                output::time(a.started_at),
                output::time(a.completed_at),
                output::opt(a.result),
                output::opt(a.abort_reason.as_deref()),
            ]);
        }
        text.push_str("\n\n");
        text.push_str(&table.render());
    }
    text
}
