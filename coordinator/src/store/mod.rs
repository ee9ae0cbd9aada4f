//! Persistence behind traits, so a PostgreSQL store can follow without
//! touching the API or the scheduler. Each operation is atomic: it either
//! commits as a whole or changes nothing, and an acknowledged write survives
//! `kill -9` of the coordinator (not power loss: see docs/durability.md).

mod migrations;
pub mod signing;
pub mod sqlite;
pub mod workflow;

use crate::scheduler::requirements::Requirements;
use chrono::{DateTime, Utc};
use kiln_shared::artifact::{Artifact, NewArtifact};
use kiln_shared::work::{LogAck, LogLine, WorkRequest, WorkRequestId};
use kiln_shared::worker::RunningWork;
use kiln_shared::{TaskType, WorkResult, WorkerRole};
use serde_json::{Map, Value};

pub use sqlite::SqliteStore;
pub use workflow::{CoordinatorTaskStore, JobKind, OrchestrationJob, TemplateStore, WorkflowStore};

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state (HTTP 409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is not acceptable as such (HTTP 400).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Conflict { code, message: message.into() }
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid { code, message: message.into() }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Work that became pending inside an operation: the scheduler indexes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: WorkRequestId,
    pub priority: i64,
    pub requirements: Requirements,
}

/// What an operation changed that the in-memory parts must learn about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub pending: Vec<PendingEntry>,
    /// Requests that left `pending` other than by assignment (aborted...).
    pub unpending: Vec<WorkRequestId>,
    /// Something finished: long-polls and log followers may re-check.
    pub finished: Vec<WorkRequestId>,
    /// Work the coordinator runs itself became ready (a workflow to
    /// populate, a callback, a server task, a delay): its runners look.
    pub coordinator: Vec<WorkRequestId>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.pending.extend(other.pending);
        self.unpending.extend(other.unpending);
        self.finished.extend(other.finished);
        self.coordinator.extend(other.coordinator);
    }
}

/// A stored API token (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: TokenRole,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

/// Roles a token created by an operator may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Admin,
    User,
    Enrollment,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::User => "user",
            TokenRole::Enrollment => "enrollment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(TokenRole::Admin),
            "user" => Some(TokenRole::User),
            "enrollment" => Some(TokenRole::Enrollment),
            _ => None,
        }
    }
}

/// A worker as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub name: String,
    pub role: WorkerRole,
    pub enabled: bool,
    pub dynamic_metadata: Map<String, Value>,
    pub static_metadata: Map<String, Value>,
    pub last_seen: Option<DateTime<Utc>>,
}

impl WorkerRecord {
    /// Static metadata over dynamic, key by key (DESIGN §4).
    pub fn metadata(&self) -> Map<String, Value> {
        let mut merged = self.dynamic_metadata.clone();
        for (k, v) in &self.static_metadata {
            merged.insert(k.clone(), v.clone());
        }
        merged
    }
}

pub trait TokenStore {
    fn create_token(&self, name: &str, role: TokenRole, hash: &str) -> StoreResult<()>;
    fn revoke_token(&self, name: &str) -> StoreResult<()>;
    fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>>;
    /// The live (unrevoked) token with this hash.
    fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>>;
}

pub trait WorkerStore {
    /// Create a worker, or return the existing one when the same name comes
    /// back with the same token. `enable` enables it (enrollment).
    fn register_worker(
        &self,
        name: &str,
        role: WorkerRole,
        token_hash: &str,
        enable: bool,
    ) -> StoreResult<WorkerRecord>;
    fn worker(&self, name: &str) -> StoreResult<Option<WorkerRecord>>;
    fn worker_by_token(&self, hash: &str) -> StoreResult<Option<WorkerRecord>>;
    fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>>;
    fn set_worker_enabled(&self, name: &str, enabled: bool) -> StoreResult<WorkerRecord>;
    /// Delete a worker; its running work ends as `worker-lost`.
    fn delete_worker(&self, name: &str) -> StoreResult<Effects>;
    fn edit_static_metadata(
        &self,
        name: &str,
        set: &Map<String, Value>,
        unset: &[String],
        replace: bool,
    ) -> StoreResult<WorkerRecord>;
    fn set_dynamic_metadata(&self, name: &str, metadata: &Map<String, Value>) -> StoreResult<WorkerRecord>;
    fn touch_worker(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// A work request to create, validated by the task registry.
#[derive(Debug, Clone)]
pub struct NewWork {
    pub task_type: TaskType,
    pub task_name: String,
    pub task_data: Map<String, Value>,
    pub workflow_data: Map<String, Value>,
    pub dependencies: Vec<WorkRequestId>,
    pub parent: Option<WorkRequestId>,
    /// Relative to the parent workflow's effective priority, if any.
    pub priority: i64,
    pub priority_adjustment: i64,
    pub created_by: String,
    /// `None` for work no agent runs (internal, workflow, wait, server).
    pub requirements: Option<Requirements>,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Default)]
pub struct WorkFilter {
    pub status: Option<kiln_shared::WorkStatus>,
    pub task_name: Option<String>,
    pub parent: Option<WorkRequestId>,
    /// Only ids below this (newest first pagination).
    pub before: Option<WorkRequestId>,
    pub limit: u32,
}

/// A completion as received.
#[derive(Debug, Clone)]
pub struct CompletionArgs {
    /// The completing worker; `None` for a user completing a wait task.
    pub worker: Option<String>,
    pub attempt: Option<u32>,
    pub result: WorkResult,
    pub output_data: Map<String, Value>,
}

pub trait WorkStore {
    fn create_work_request(&self, new: NewWork) -> StoreResult<(WorkRequest, Effects)>;
    fn add_dependencies(&self, id: WorkRequestId, deps: &[WorkRequestId]) -> StoreResult<(WorkRequest, Effects)>;
    fn work_request(&self, id: WorkRequestId) -> StoreResult<Option<WorkRequest>>;
    fn list_work_requests(&self, filter: &WorkFilter) -> StoreResult<Vec<WorkRequest>>;
    fn abort_work_request(&self, id: WorkRequestId, reason: &str) -> StoreResult<(WorkRequest, Effects)>;
    fn retry_work_request(&self, id: WorkRequestId) -> StoreResult<(WorkRequest, Effects)>;
    /// Hand a pending request to a worker; `None` when it is no longer pending.
    fn assign(&self, id: WorkRequestId, worker: &str, now: DateTime<Utc>) -> StoreResult<Option<WorkRequest>>;
    fn complete(&self, id: WorkRequestId, args: CompletionArgs) -> StoreResult<(WorkRequest, Effects)>;
    /// The attempts a worker currently holds.
    fn running_for_worker(&self, worker: &str) -> StoreResult<Vec<RunningWork>>;
    /// Every pending request, for rebuilding the scheduler's index at start.
    fn pending_entries(&self) -> StoreResult<Vec<PendingEntry>>;
    /// Running attempts whose worker was last seen before `cutoff`.
    fn stale_running(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<RunningWork>>;
    /// End an attempt as an infrastructure error (`worker-lost`).
    fn fail_attempt(&self, work: RunningWork, code: &str) -> StoreResult<Effects>;
    /// Does this worker hold (or did it hold) an attempt of this request?
    fn worker_has_attempt(&self, id: WorkRequestId, worker: &str, attempt: Option<u32>) -> StoreResult<bool>;
    /// Artifact ids named by the task data of work this worker runs now.
    fn artifacts_needed_by_worker(&self, worker: &str) -> StoreResult<Vec<i64>>;
}

pub trait LogStore {
    /// Append lines to one attempt's log; seqs at or below the acknowledged
    /// one are dropped; past `cap` bytes one truncation line is written.
    fn append_log(&self, id: WorkRequestId, attempt: u32, lines: &[LogLine], cap: u64) -> StoreResult<LogAck>;
    /// Lines stored after position `after` (0 = from the start), with their
    /// positions, at most `limit`.
    fn log_lines(&self, id: WorkRequestId, after: i64, limit: u32) -> StoreResult<Vec<(i64, LogLine)>>;
}

#[derive(Debug, Clone, Default)]
pub struct ArtifactFilter {
    pub category: Option<String>,
    pub data: Vec<(String, String)>,
    pub before: Option<i64>,
    pub limit: u32,
}

pub trait ArtifactStore {
    fn create_artifact(&self, new: &NewArtifact, created_by: &str) -> StoreResult<Artifact>;
    fn artifact(&self, id: i64) -> StoreResult<Option<Artifact>>;
    fn list_artifacts(&self, filter: &ArtifactFilter) -> StoreResult<Vec<Artifact>>;
    fn mark_file_complete(&self, id: i64, path: &str) -> StoreResult<Artifact>;
}

/// Aggregates `GET /metrics` shows, computed when it is scraped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Work requests per status; statuses with none are left out.
    pub work_by_status: Vec<(kiln_shared::WorkStatus, u64)>,
    pub workers: u64,
    pub workers_enabled: u64,
    /// Workers seen at or after the `connected_since` given.
    pub workers_connected: u64,
    /// Workers holding at least one running attempt.
    pub workers_busy: u64,
    /// Bytes of log text kept (truncated lines not counted).
    pub log_bytes: u64,
}

pub trait StatsStore {
    /// A handful of aggregate queries, each served by an index or a small table.
    fn stats(&self, connected_since: DateTime<Utc>) -> StoreResult<StoreStats>;
}

/// Everything the coordinator persists.
pub trait Store:
    TokenStore
    + WorkerStore
    + WorkStore
    + LogStore
    + ArtifactStore
    + StatsStore
    + WorkflowStore
    + TemplateStore
    + CoordinatorTaskStore
    + signing::SigningKeyStore
    + Send
    + Sync
{
}
impl<T> Store for T where
    T: TokenStore
        + WorkerStore
        + WorkStore
        + LogStore
        + ArtifactStore
        + StatsStore
        + WorkflowStore
        + TemplateStore
        + CoordinatorTaskStore
        + signing::SigningKeyStore
        + Send
        + Sync
{
}

/// Timestamps are stored as fixed-width RFC 3339 so they sort as text.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
