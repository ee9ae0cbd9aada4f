//! `kiln workflow show ID`: a workflow as a tree, children under their
//! parents (sub-workflows nested), each node with its display name, task,
//! status and result; failed nodes say why and how to read their log.
//! `--json` prints the root work request with a `children` list at every
//! level.

use super::Ctx;
use crate::error::CliError;
use crate::output;
use kiln_shared::client::WorkRequestFilter;
use kiln_shared::exit;
use kiln_shared::work::WorkRequest;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde_json::Value;

/// A work request with its children, oldest first.
#[derive(Debug, Clone)]
pub struct Node {
    pub request: WorkRequest,
    pub children: Vec<Node>,
}

/// Deeper than this is a loop or a mistake.
const MAX_DEPTH: usize = 32;

pub async fn run(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let root = ctx.api(ctx.client.work_request(id)).await?;
    let tree = fetch(ctx, root, 0).await?;
    if ctx.json {
        output::json(&to_json(&tree))?;
    } else {
        output::raw(&render(&tree))?;
    }
    Ok(exit::SUCCESS)
}

async fn children(ctx: &Ctx, parent: i64) -> Result<Vec<WorkRequest>, CliError> {
    let mut filter = WorkRequestFilter { parent: Some(parent), limit: Some(500), ..Default::default() };
    let mut all = Vec::new();
    loop {
        let page = ctx.api(ctx.client.work_requests(&filter)).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => filter.cursor = Some(next),
            None => break,
        }
    }
    all.sort_by_key(|wr| wr.id);
    Ok(all)
}

fn fetch(
    ctx: &Ctx,
    request: WorkRequest,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Node, CliError>> + Send + '_>> {
    Box::pin(async move {
        let mut node = Node { request, children: Vec::new() };
        if node.request.task_type == TaskType::Workflow && depth < MAX_DEPTH {
            for child in children(ctx, node.request.id).await? {
                node.children.push(fetch(ctx, child, depth + 1).await?);
            }
        }
        Ok(node)
    })
}

pub fn to_json(node: &Node) -> Value {
    let mut value = serde_json::to_value(&node.request).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("children".into(), Value::Array(node.children.iter().map(to_json).collect()));
    }
    value
}

/// One line for a node: id, name, task, state, and why it failed.
fn describe(wr: &WorkRequest) -> String {
    let name = wr.workflow_data.get("display_name").and_then(Value::as_str);
    let task = format!("{}/{}", wr.task_type, wr.task_name);
    let mut line = match name {
        Some(name) => format!("#{} {name} [{task}]", wr.id),
        None => format!("#{} {task}", wr.id),
    };
    let state = match (wr.status, wr.result) {
        (WorkStatus::Completed, Some(result)) => format!("completed/{result}"),
        (WorkStatus::Aborted, _) => format!("aborted ({})", wr.abort_reason.as_deref().unwrap_or("-")),
        (status, _) => status.to_string(),
    };
    if let Some(template) = wr.workflow_data.get("workflow_template").and_then(Value::as_str) {
        line.push_str(&format!(" from template {template}"));
    }
    line.push_str(&format!("  {state}"));
    if let Some(runtime) = wr.workflow_runtime_status.as_deref().filter(|_| wr.task_type == TaskType::Workflow) {
        if wr.status == WorkStatus::Running {
            line.push_str(&format!(" ({runtime})"));
        }
    }
    if wr.status == WorkStatus::Running && wr.workflow_data.get("needs_input") == Some(&Value::Bool(true)) {
        line.push_str(&format!("  needs input: kiln complete {} --result success", wr.id));
    }
    if let Some(worker) = &wr.worker {
        line.push_str(&format!("  on {worker}"));
    }
    if matches!(wr.result, Some(WorkResult::Failure | WorkResult::Error)) {
        let errors = wr.output_data.get("errors").and_then(Value::as_array);
        if let Some(message) = errors.and_then(|e| e.first()).and_then(|e| e.get("message")).and_then(Value::as_str) {
            line.push_str(&format!("  — {message}"));
        }
        if wr.task_type == TaskType::Worker || wr.task_type == TaskType::Signing {
            line.push_str(&format!("  (log: kiln logs {})", wr.id));
        }
    }
    line
}

/// The tree as text, drawn with box characters.
pub fn render(root: &Node) -> String {
    let mut out = describe(&root.request);
    out.push('\n');
    draw(&root.children, "", &mut out);
    out
}

fn draw(nodes: &[Node], prefix: &str, out: &mut String) {
    for (i, node) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        out.push_str(prefix);
        out.push_str(if last { "└── " } else { "├── " });
        out.push_str(&describe(&node.request));
        out.push('\n');
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        draw(&node.children, &deeper, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wr(id: i64, task_type: &str, name: &str, status: &str, result: Value, wd: Value, out: Value) -> WorkRequest {
        serde_json::from_value(json!({
            "id": id, "task_type": task_type, "task_name": name, "task_data": {}, "workflow_data": wd,
            "parent": null, "dependencies": [], "status": status, "result": result, "worker": null,
            "attempt": 1, "attempts": [], "priority_base": 0, "priority_adjustment": 0,
            "resolved_backend": null, "abort_reason": null, "workflow_runtime_status": "running",
            "created_by": "alice", "created_at": "2026-01-01T00:00:00Z", "started_at": null,
            "completed_at": null, "output_data": out, "retries_left": 3
        }))
        .expect("a work request")
    }

    #[test]
    fn draws_children_under_parents_with_names_states_and_failures() {
        let build = wr(
            2,
            "worker",
            "sbuild",
            "completed",
            json!("failure"),
            json!({"display_name": "sbuild amd64"}),
            json!({}),
        );
        let check = wr(
            3,
            "internal",
            "workflow",
            "completed",
            json!("failure"),
            json!({"display_name": "plan lintian and autopkgtest"}),
            json!({"errors": [{"code": "stage-failed", "message": "sbuild-amd64 failed"}]}),
        );
        let approval =
            wr(5, "wait", "external_approval", "running", json!(null), json!({"needs_input": true}), json!({}));
        let inner = Node {
            request: wr(4, "workflow", "sbuild", "running", json!(null), json!({}), json!({})),
            children: vec![Node { request: approval, children: vec![] }],
        };
        let root = Node {
            request: wr(
                1,
                "workflow",
                "debian_pipeline",
                "running",
                json!(null),
                json!({"workflow_template": "release"}),
                json!({}),
            ),
            children: vec![Node { request: build, children: vec![] }, Node { request: check, children: vec![] }, inner],
        };
        let text = render(&root);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 workflow/debian_pipeline from template release  running (running)");
        assert!(lines[1].starts_with("├── #2 sbuild amd64 [worker/sbuild]  completed/failure"), "{text}");
        assert!(lines[1].ends_with("(log: kiln logs 2)"), "{text}");
        assert!(lines[2].contains("— sbuild-amd64 failed"), "{text}");
        assert!(lines[3].starts_with("└── #4 workflow/sbuild"), "{text}");
        assert!(lines[4].starts_with("    └── #5 wait/external_approval  running  needs input"), "{text}");
        let json = to_json(&root);
        assert_eq!(json["children"][2]["children"][0]["id"], json!(5));
    }
}
