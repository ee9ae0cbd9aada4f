//! Workflow templates and template-based submissions (DESIGN §9).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a template's `task_data` merges with a submission's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Debusine's rule: top-level keys only, the template's value wins.
    #[default]
    Top,
    /// Mappings merge recursively; the template's leaves still win.
    Deep,
}

impl MergeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Top => "top",
            MergeMode::Deep => "deep",
        }
    }
}

/// `PUT /api/1/workflow-templates/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTemplateSpec {
    /// The workflow it starts (`matrix`, `noop`, …).
    pub task_name: String,
    /// Values fixed by the template.
    #[serde(default)]
    pub task_data: Map<String, Value>,
    /// Key path → allowed values (`{"targets.backend": ["unshare"]}`).
    #[serde(default)]
    pub allowed: Map<String, Value>,
    #[serde(default)]
    pub merge: MergeMode,
    /// Base priority of the workflows it starts.
    #[serde(default)]
    pub priority: i64,
}

/// A stored template as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTemplate {
    pub name: String,
    pub task_name: String,
    pub task_data: Map<String, Value>,
    pub allowed: Map<String, Value>,
    pub merge: MergeMode,
    pub priority: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/1/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkflow {
    pub template: String,
    #[serde(default)]
    pub task_data: Map<String, Value>,
    /// Adjustment to the template's priority; above 0 for admins only.
    #[serde(default)]
    pub priority: i64,
}
