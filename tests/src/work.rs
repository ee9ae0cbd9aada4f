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
