//! Builders for work requests and the worker-side steps tests repeat.

use kiln_shared::client::Client;
use kiln_shared::work::{Completion, NewWorkRequest, WorkRequest};
use kiln_shared::{TaskType, WorkResult};
use serde_json::{Map, Value};
use std::time::Duration;

/// A request of any type with empty data.
pub fn request(task_type: TaskType, name: &str) -> NewWorkRequest {
    NewWorkRequest {
        task_type,
        task_name: name.to_owned(),
        task_data: Map::new(),
        dependencies: Vec::new(),
        priority: 0,
        workflow_data: Map::new(),
        parent: None,
    }
}

/// A worker `noop` depending on `deps`.
pub fn noop(deps: &[i64]) -> NewWorkRequest {
    NewWorkRequest { dependencies: deps.to_vec(), ..request(TaskType::Worker, "noop") }
}

/// An internal synchronization point depending on `deps`.
pub fn sync_point(deps: &[i64]) -> NewWorkRequest {
    NewWorkRequest { dependencies: deps.to_vec(), ..request(TaskType::Internal, "synchronization_point") }
}

/// With `task_data`.
pub fn with_data(mut new: NewWorkRequest, data: Value) -> NewWorkRequest {
    new.task_data = data.as_object().cloned().unwrap_or_default();
    new
}

/// Take the next assignment (within 5 s) or panic.
pub async fn take(worker: &Client) -> WorkRequest {
    worker.next(Duration::from_secs(5)).await.expect("next").expect("an assignment within 5 s")
}

/// Complete the given assignment with `result`.
pub async fn finish(worker: &Client, wr: &WorkRequest, result: WorkResult) -> WorkRequest {
    worker
        .complete(wr.id, &Completion { result, attempt: Some(wr.attempt), output_data: None })
        .await
        .expect("complete")
}

/// A worker `command` running `/bin/sh -c script` in the unshare backend on
/// environment `env`, with `extra` task_data keys merged in.
pub fn shell_command(env: i64, script: &str, extra: serde_json::Value) -> NewWorkRequest {
    backend_command(env, "unshare", script, extra)
}

/// [`shell_command`] on the given backend (or `auto`).
pub fn backend_command(env: i64, backend: &str, script: &str, extra: serde_json::Value) -> NewWorkRequest {
    let mut data = serde_json::json!({"environment": env, "backend": backend, "command": ["/bin/sh", "-c", script]});
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    with_data(request(TaskType::Worker, "command"), data)
}

/// Wait until `id` is completed or aborted; panics after `within`.
pub async fn finished_within(user: &Client, id: i64, within: Duration) -> WorkRequest {
    crate::wait_for(within, || async {
        let wr = user.work_request(id).await.ok()?;
        wr.status.is_final().then_some(wr)
    })
    .await
    .unwrap_or_else(|| panic!("work request {id} did not finish within {within:?}"))
}

/// The texts of a request's log lines, joined by newlines.
pub async fn log_text(user: &Client, id: i64) -> String {
    let Ok(resp) = user.log(id, false).await else { return String::new() };
    let body = resp.text().await.unwrap_or_default();
    body.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text").and_then(serde_json::Value::as_str).map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n")
}
