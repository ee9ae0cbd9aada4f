//! Server tasks (DESIGN §2): work that needs the database and never runs
//! user code, executed by a bounded pool inside the coordinator. Only admins
//! create them directly; workflows create them as steps.
//!
//! The pool claims pending server tasks (pending → running), runs each on a
//! blocking thread and records the outcome as a completion. Server tasks a
//! previous process was running go back to pending at start-up, so each
//! task is written to be safe to run again.

pub mod aggregate;
pub mod expire;

use crate::state::AppState;
use crate::store::{CompletionArgs, StoreError};
use kiln_shared::work::WorkRequest;
use kiln_shared::WorkResult;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How many server tasks run at once.
pub const POOL_SIZE: usize = 2;

/// How a server task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: WorkResult,
    pub output_data: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerTaskError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to write or remove a file: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerTaskError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServerTaskError::Invalid(message.into())
    }
}

fn parse<T: DeserializeOwned>(data: &Map<String, Value>) -> Result<T, ServerTaskError> {
    serde_json::from_value(Value::Object(data.clone())).map_err(|e| ServerTaskError::invalid(format!("task_data: {e}")))
}

/// Check a server task's `task_data` at creation.
pub fn validate(name: &str, data: &Map<String, Value>) -> Result<(), String> {
    let checked = match name {
        "aggregate_results" => parse::<aggregate::AggregateData>(data).map(drop),
        "expire_artifacts" => {
            parse::<expire::ExpireData>(data).and_then(|d| d.check().map_err(ServerTaskError::Invalid))
        }
        other => Err(ServerTaskError::invalid(format!("there is no server task named {other:?}"))),
    };
    checked.map_err(|e| e.to_string())
}

/// Run one claimed task to its outcome (an error is an `error` result).
pub fn execute(state: &AppState, task: &WorkRequest) -> Outcome {
    let (store, files) = (state.store.as_ref(), state.files.as_ref());
    let ran = match task.task_name.as_str() {
        "aggregate_results" => aggregate::run(store, files, task),
        "expire_artifacts" => expire::run(store, files, task),
        other => Err(ServerTaskError::invalid(format!("there is no server task named {other:?}"))),
    };
    ran.unwrap_or_else(|e| {
        tracing::warn!(id = task.id, task = %task.task_name, error = %e, "server task failed");
        let errors = json!({"errors": [{"code": "server-task-failed", "message": e.to_string()}]});
        Outcome { result: WorkResult::Error, output_data: errors.as_object().cloned().unwrap_or_default() }
    })
}

/// The pool: claim pending server tasks while slots are free.
pub async fn run_pool(state: AppState) {
    let slots = Arc::new(Semaphore::new(POOL_SIZE));
    let rescan = Arc::new(Notify::new());
    let mut work = state.coordinator_work.subscribe();
    loop {
        let free = u32::try_from(slots.available_permits()).unwrap_or(0);
        let pending = if free > 0 { state.db(move |s| s.pending_server_tasks(free)).await } else { Ok(Vec::new()) };
        match pending {
            Ok(ids) => {
                for id in ids {
                    let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                    let claimed = state.db(move |s| s.claim_server_task(id, chrono::Utc::now())).await;
                    let Ok(Some(task)) = claimed else { continue };
                    let (state, rescan) = (state.clone(), rescan.clone());
                    tokio::spawn(async move {
                        finish(&state, task).await;
                        drop(permit);
                        rescan.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!(error = %e.message, "failed to list server tasks"),
        }
        tokio::select! {
            _ = work.changed() => {}
            _ = rescan.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn finish(state: &AppState, task: WorkRequest) {
    let (id, attempt) = (task.id, task.attempt);
    tracing::info!(id, task = %task.task_name, "server task started");
    let runner = state.clone();
    let outcome = match tokio::task::spawn_blocking(move || execute(&runner, &task)).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let errors = json!({"errors": [{"code": "server-task-panicked", "message": e.to_string()}]});
            Outcome { result: WorkResult::Error, output_data: errors.as_object().cloned().unwrap_or_default() }
        }
    };
    let args = CompletionArgs {
        worker: None,
        attempt: Some(attempt),
        result: outcome.result,
        output_data: outcome.output_data,
    };
    match state.db(move |s| s.complete(id, args)).await {
        Ok((wr, effects)) => {
            state.apply(&effects);
            tracing::info!(id, result = ?wr.result, "server task completed");
        }
        // Aborted meanwhile, most likely: nothing to record.
        Err(e) => tracing::warn!(id, error = %e.message, "server task outcome not recorded"),
    }
}
