//! Artifacts: typed bundles of files with JSON `data`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type ArtifactId = i64;

/// One file an artifact declares before its bytes arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `POST /api/1/artifacts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewArtifact {
    pub category: String,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The work request that produced it (Kiln addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_request: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactState {
    /// Some declared files have not been uploaded yet.
    Incomplete,
    Complete,
}

/// A file of an artifact as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub complete: bool,
}

/// An artifact as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: ArtifactId,
    pub category: String,
    pub data: Map<String, Value>,
    pub files: Vec<ArtifactFile>,
    pub state: ArtifactState,
    pub work_request: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}
