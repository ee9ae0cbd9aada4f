//! Workflow orchestrators (DESIGN §2, §3): a workflow's `task_data` is
//! validated at creation by its orchestrator; once the workflow runs, the
//! orchestrator *populates* it with children (created blocked, with their
//! dependencies), and runs again for each `internal/workflow` callback that
//! becomes pending. Orchestrators are idempotent: each child has a `step`
//! unique in its workflow, and asking for an existing step returns it.
//!
//! Orchestrators see the store only through [`WorkflowContext`], which the
//! store implements inside one transaction: an orchestration is applied
//! whole or not at all.

pub mod debian_pipeline;
pub mod lookup;
pub mod matrix;
pub mod noop;
pub mod runner;
pub mod sbuild;
pub mod submit;
pub mod templates;

pub use lookup::{Lookup, StoreLookup, Submitter};

use crate::store::StoreError;
use crate::tasks::TaskError;
use kiln_shared::work::WorkRequestId;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde_json::{Map, Value};

/// Why an orchestrator refused its input or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// `task_data` (or a template) is not acceptable; `key` names the culprit.
    #[error("{message}")]
    Invalid { key: String, message: String },
    /// A value outside a template's `allowed` list.
    #[error("{message}")]
    NotAllowed { key: String, message: String },
    /// The submitter may not use something the workflow names (HTTP 403).
    #[error("{message}")]
    Forbidden { key: String, message: String },
    /// A stage of the workflow did not succeed, so it goes no further: the
    /// callback that found out ends in `failure` (and so the workflow).
    #[error("{message}")]
    StageFailed { step: String, message: String },
    /// A child's task data was refused by the task registry.
    #[error("failed to create step {step:?}: {source}")]
    Child { step: String, source: TaskError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WorkflowError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        WorkflowError::Invalid { key: key.into(), message: message.into() }
    }

    /// The key the error is about, if it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            WorkflowError::Invalid { key, .. }
            | WorkflowError::NotAllowed { key, .. }
            | WorkflowError::Forbidden { key, .. } => Some(key),
            WorkflowError::Child { step, .. } | WorkflowError::StageFailed { step, .. } => Some(step),
            WorkflowError::Store(_) => None,
        }
    }
}

/// The workflow being orchestrated.
#[derive(Debug, Clone)]
pub struct WorkflowInfo {
    pub id: WorkRequestId,
    pub task_name: String,
    pub task_data: Map<String, Value>,
    pub workflow_data: Map<String, Value>,
    /// Effective priority (base + adjustment), which children build on.
    pub priority: i64,
    pub created_by: Option<String>,
}

impl WorkflowInfo {
    /// The template's `allowed` values for `key`, snapshotted at submission.
    pub fn allowed(&self, key: &str) -> Option<Vec<Value>> {
        self.workflow_data.get("allowed").and_then(|a| a.get(key)).and_then(Value::as_array).cloned()
    }
}

/// A child as an orchestrator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildInfo {
    pub id: WorkRequestId,
    pub step: Option<String>,
    pub task_type: TaskType,
    pub task_name: String,
    pub status: WorkStatus,
    pub result: Option<WorkResult>,
    pub task_data: Map<String, Value>,
    /// What the child reported (artifact ids of its results...).
    pub output_data: Map<String, Value>,
}

impl ChildInfo {
    /// Finished with `success` (or `skipped`)?
    pub fn succeeded(&self) -> bool {
        self.status == WorkStatus::Completed && matches!(self.result, Some(WorkResult::Success | WorkResult::Skipped))
    }
}

/// A child to create (unless its step exists already).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    /// Unique within the workflow: the idempotency key.
    pub step: String,
    pub task_type: TaskType,
    pub task_name: String,
    pub task_data: Map<String, Value>,
    /// More `workflow_data` (`step` is set from the field above).
    pub workflow_data: Map<String, Value>,
    /// Siblings it waits for.
    pub dependencies: Vec<WorkRequestId>,
    /// Relative to the workflow's effective priority.
    pub priority: i64,
    /// Narrow the acceptable backends derived from `task_data`, as when
    /// `auto` is resolved against a template's `allowed` list.
    pub backends: Option<Vec<String>>,
}

impl ChildSpec {
    pub fn new(step: impl Into<String>, task_type: TaskType, task_name: &str, task_data: Map<String, Value>) -> Self {
        ChildSpec {
            step: step.into(),
            task_type,
            task_name: task_name.to_owned(),
            task_data,
            workflow_data: Map::new(),
            dependencies: Vec::new(),
            priority: 0,
            backends: None,
        }
    }

    pub fn with_dependencies(mut self, deps: Vec<WorkRequestId>) -> Self {
        self.dependencies = deps;
        self
    }

    pub fn with_workflow_data(mut self, key: &str, value: Value) -> Self {
        self.workflow_data.insert(key.to_owned(), value);
        self
    }
}

/// What an orchestrator may do to its workflow.
pub trait WorkflowContext {
    fn workflow(&self) -> &WorkflowInfo;
    /// The workflow's children, oldest first.
    fn children(&mut self) -> Result<Vec<ChildInfo>, WorkflowError>;
    /// Create a child, or return the existing one with the same step.
    fn ensure_child(&mut self, spec: ChildSpec) -> Result<WorkRequestId, WorkflowError>;
    /// Read-only lookups (artifacts, signing keys) in the same transaction.
    fn lookup(&self) -> &dyn Lookup;
}

/// One kind of workflow.
pub trait Orchestrator: Send + Sync {
    /// Check `task_data` at creation: refused input creates nothing.
    fn validate(&self, data: &Map<String, Value>) -> Result<(), WorkflowError>;
    /// Check at submission what needs the store (artifacts exist, the
    /// submitter may use a signing key). Runs after [`Orchestrator::validate`].
    fn check_submission(
        &self,
        data: &Map<String, Value>,
        submitter: &Submitter,
        lookup: &dyn Lookup,
    ) -> Result<(), WorkflowError> {
        let _ = (data, submitter, lookup);
        Ok(())
    }
    /// Create the children; running it again creates nothing new.
    fn populate(&self, ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError>;
    /// Run a callback's step. By default the orchestrator populates again,
    /// which adds whatever the results so far call for.
    fn callback(&self, ctx: &mut dyn WorkflowContext, step: &str) -> Result<(), WorkflowError> {
        let _ = step;
        self.populate(ctx)
    }
}

/// The built-in orchestrators by workflow name.
pub fn orchestrator(name: &str) -> Option<&'static dyn Orchestrator> {
    match name {
        "noop" => Some(&noop::Noop),
        "matrix" => Some(&matrix::Matrix),
        "sbuild" => Some(&sbuild::Sbuild),
        "debian_pipeline" => Some(&debian_pipeline::DebianPipeline),
        _ => None,
    }
}

/// Names of the built-in workflows.
pub const NAMES: &[&str] = &["noop", "matrix", "sbuild", "debian_pipeline"];
