//! Work requests as the API shows them, and the bodies that act on them.

use crate::status::{TaskType, WorkResult, WorkStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type WorkRequestId = i64;

/// `POST /api/1/work-requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkRequest {
    pub task_type: TaskType,
    pub task_name: String,
    #[serde(default)]
    pub task_data: Map<String, Value>,
    #[serde(default)]
    pub dependencies: Vec<WorkRequestId>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub workflow_data: Map<String, Value>,
    /// The workflow this request belongs to (Kiln addition to the contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<WorkRequestId>,
}

/// One assignment of a work request to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<WorkResult>,
    pub abort_reason: Option<String>,
}

/// A work request as the API shows it (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkRequest {
    pub id: WorkRequestId,
    pub task_type: TaskType,
    pub task_name: String,
    pub task_data: Map<String, Value>,
    pub workflow_data: Map<String, Value>,
    pub parent: Option<WorkRequestId>,
    pub dependencies: Vec<WorkRequestId>,
    pub status: WorkStatus,
    pub result: Option<WorkResult>,
    pub worker: Option<String>,
    pub attempt: u32,
    pub attempts: Vec<Attempt>,
    pub priority_base: i64,
    pub priority_adjustment: i64,
    pub resolved_backend: Option<String>,
    pub abort_reason: Option<String>,
    pub workflow_runtime_status: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub output_data: Map<String, Value>,
    /// Automatic retries of `error` still available.
    pub retries_left: u32,
}

/// `POST /api/1/work-requests/{id}/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    pub result: WorkResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_data: Option<Map<String, Value>>,
}

/// `POST /api/1/work-requests/{id}/dependencies` (Kiln addition): add edges
/// to a request that has not started yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDependencies {
    pub dependencies: Vec<WorkRequestId>,
}

/// One line of a task's log as the agent sends it and followers read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub stream: LogStream,
    pub text: String,
    /// Which attempt wrote it; set by the coordinator on the way out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    Kiln,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Kiln => "kiln",
        }
    }
}

/// Reply to a log append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAck {
    pub acknowledged_seq: u64,
}
