//! What a work request needs from an agent, derived once at creation and
//! stored with it. Equal requirements form one *requirement class*: the
//! scheduler indexes pending work by class, never scanning work per agent.

use kiln_shared::WorkerRole;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Comparison operators of explicit constraints (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "regex")]
    Regex,
}

/// `{"key": K, "op": "==|!=|>=|<=|contains|regex", "value": V}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    pub key: String,
    pub op: Op,
    pub value: Value,
}

/// Everything the matcher checks. Lists are kept sorted so that equal needs
/// serialize to the same class key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirements {
    pub role: WorkerRole,
    pub task_name: String,
    /// The `<task_name>:version` value the agent must advertise.
    pub task_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Acceptable backends; the agent must have one available. Empty: none needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executables: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

impl Requirements {
    pub fn new(role: WorkerRole, task_name: &str, task_version: u32) -> Self {
        Requirements {
            role,
            task_name: task_name.to_owned(),
            task_version,
            architecture: None,
            backends: Vec::new(),
            min_memory: None,
            min_disk: None,
            executables: Vec::new(),
            constraints: Vec::new(),
        }
    }

    /// Sort and dedupe the lists so equal needs compare equal.
    pub fn normalized(mut self) -> Self {
        self.backends.sort();
        self.backends.dedup();
        self.executables.sort();
        self.executables.dedup();
        self
    }

    /// The requirement class this belongs to.
    pub fn class_key(&self) -> String {
        // Serializing plain data cannot fail; fall back to Debug to stay total.
        serde_json::to_string(self).unwrap_or_else(|_| format!("{self:?}"))
    }
}
