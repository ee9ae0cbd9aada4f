//! Store traits for the work the coordinator runs itself: orchestrations
//! (with their per-root lease), workflow templates, server tasks, wait
//! timers and artifact expiry.

use super::{Effects, StoreResult};
use crate::workflows::Orchestrator;
use chrono::{DateTime, Utc};
use kiln_shared::work::{WorkRequest, WorkRequestId};
use kiln_shared::workflow::{WorkflowTemplate, WorkflowTemplateSpec};

/// What an orchestration is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// The workflow runs and has not been populated yet.
    Populate,
    /// This `internal/workflow` callback is pending (or was interrupted).
    Callback { callback: WorkRequestId, step: String },
}

/// One orchestration to run: at most one per root at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestrationJob {
    pub kind: JobKind,
    pub workflow: WorkRequestId,
    /// The workflow's `task_name`: which orchestrator runs.
    pub workflow_name: String,
    /// The top-level workflow above it (itself when it has no parent).
    pub root: WorkRequestId,
}

impl OrchestrationJob {
    /// The request this job is about (the callback, or the workflow).
    pub fn subject(&self) -> WorkRequestId {
        match &self.kind {
            JobKind::Populate => self.workflow,
            JobKind::Callback { callback, .. } => *callback,
        }
    }
}

pub trait WorkflowStore {
    /// Orchestrations ready to run, oldest first.
    fn orchestration_jobs(&self, limit: u32) -> StoreResult<Vec<OrchestrationJob>>;
    /// Take the root's lease for `holder` (false when another holds it) and
    /// mark a callback running.
    fn begin_orchestration(&self, job: &OrchestrationJob, holder: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Run `orchestrator` in one transaction, record how it went (the
    /// workflow populated, the callback completed; an orchestrator error
    /// ends the callback or the workflow in `error`), release the lease.
    fn run_orchestration(
        &self,
        job: &OrchestrationJob,
        holder: &str,
        orchestrator: &dyn Orchestrator,
    ) -> StoreResult<Effects>;
    /// Give a lease back without running (after a failure).
    fn release_lease(&self, root: WorkRequestId, holder: &str) -> StoreResult<()>;
    /// Forget every lease: at start-up of the one coordinator on this store.
    fn release_all_leases(&self) -> StoreResult<()>;
}

pub trait TemplateStore {
    /// Create or replace; true when it was created.
    fn put_template(&self, name: &str, spec: &WorkflowTemplateSpec) -> StoreResult<(WorkflowTemplate, bool)>;
    fn template(&self, name: &str) -> StoreResult<Option<WorkflowTemplate>>;
    fn list_templates(&self) -> StoreResult<Vec<WorkflowTemplate>>;
}

/// An artifact as expiry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactAge {
    pub id: i64,
    pub category: String,
    pub created_at: DateTime<Utc>,
}

pub trait CoordinatorTaskStore {
    /// Pending server tasks, oldest first.
    fn pending_server_tasks(&self, limit: u32) -> StoreResult<Vec<WorkRequestId>>;
    /// Pending → running for the server-task pool; `None` if taken already.
    fn claim_server_task(&self, id: WorkRequestId, now: DateTime<Utc>) -> StoreResult<Option<WorkRequest>>;
    /// Server tasks a previous process was running go back to pending.
    fn requeue_server_tasks(&self) -> StoreResult<u64>;
    /// Running `wait/delay` requests due at `now`.
    fn due_delays(&self, now: DateTime<Utc>) -> StoreResult<Vec<WorkRequestId>>;
    /// When the next running delay is due.
    fn next_wake(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Artifacts created before `before`.
    fn artifacts_created_before(&self, before: DateTime<Utc>) -> StoreResult<Vec<ArtifactAge>>;
    /// Artifacts named by the task data of work not finished yet.
    fn artifacts_in_use(&self) -> StoreResult<Vec<i64>>;
    /// Delete artifacts; returns the file hashes no artifact uses any more.
    fn delete_artifacts(&self, ids: &[i64]) -> StoreResult<Vec<String>>;
}
