//! Workers (agents) as the API shows them, and the bodies agents send.

use crate::status::WorkerRole;
use crate::work::WorkRequestId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /api/1/workers/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub name: String,
    pub token: String,
    pub role: WorkerRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
}

/// A worker as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub name: String,
    pub role: WorkerRole,
    pub enabled: bool,
    pub connected: bool,
    pub concurrency: u32,
    /// Static metadata merged over dynamic metadata, key by key.
    pub metadata: Map<String, Value>,
    pub static_metadata: Map<String, Value>,
    pub running: Vec<WorkRequestId>,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
}

/// A running work request as the agent reports it, or an abort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWork {
    pub id: WorkRequestId,
    pub attempt: u32,
}

/// `POST /api/1/worker/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default)]
    pub running: Vec<RunningWork>,
}

/// Reply to a heartbeat: the attempts the agent must stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub abort: Vec<RunningWork>,
}

/// Metadata keys with a meaning to the scheduler (DESIGN §4).
pub mod keys {
    pub const HOST_ARCHITECTURE: &str = "system:host_architecture";
    pub const ARCHITECTURES: &str = "system:architectures";
    pub const CPU_COUNT: &str = "system:cpu_count";
    pub const TOTAL_MEMORY: &str = "system:total_physical_memory";
    pub const AVAILABLE_DISK: &str = "system:available_disk_space";
    pub const EXECUTABLES: &str = "system:executables";
    pub const WORKER_ROLE: &str = "system:worker_role";
    /// How many tasks the agent runs at once (Kiln addition; default 1).
    pub const CONCURRENCY: &str = "system:concurrency";
    pub const TASKS_ALLOWLIST: &str = "tasks_allowlist";
    pub const TASKS_DENYLIST: &str = "tasks_denylist";

    /// `executor:<backend>:available`.
    pub fn backend_available(backend: &str) -> String {
        format!("executor:{backend}:available")
    }
    /// `<task_name>:version`.
    pub fn task_version(task_name: &str) -> String {
        format!("{task_name}:version")
    }
}
