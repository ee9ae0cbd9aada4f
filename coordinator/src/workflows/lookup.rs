//! Read-only lookups an orchestrator may make: artifacts (a source package,
//! the newest environment for a codename and architecture) and signing
//! keys. At submission they read the store; while a workflow is populated
//! or a callback runs they read inside the orchestration's transaction.

use crate::store::signing::SigningKey;
use crate::store::{ArtifactFilter, Store, StoreError};
use kiln_shared::artifact::Artifact;

pub trait Lookup {
    fn artifact(&self, id: i64) -> Result<Option<Artifact>, StoreError>;
    /// Artifacts of `category` whose data has every `(key, value)` (compared
    /// as text), newest first, at most `limit`.
    fn artifacts(&self, category: &str, data: &[(String, String)], limit: u32) -> Result<Vec<Artifact>, StoreError>;
    /// A signing key by fingerprint (upper-case hex).
    fn signing_key(&self, fingerprint: &str) -> Result<Option<SigningKey>, StoreError>;
}

/// Who submits a workflow: what access checks at submission look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    pub user: String,
    /// The template the workflow is started from, if any.
    pub template: Option<String>,
}

/// The store, read between operations (at submission).
pub struct StoreLookup<'a>(pub &'a dyn Store);

impl Lookup for StoreLookup<'_> {
    fn artifact(&self, id: i64) -> Result<Option<Artifact>, StoreError> {
        self.0.artifact(id)
    }

    fn artifacts(&self, category: &str, data: &[(String, String)], limit: u32) -> Result<Vec<Artifact>, StoreError> {
        let filter = ArtifactFilter { category: Some(category.to_owned()), data: data.to_vec(), before: None, limit };
        self.0.list_artifacts(&filter)
    }

    fn signing_key(&self, fingerprint: &str) -> Result<Option<SigningKey>, StoreError> {
        self.0.signing_key(fingerprint)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory lookup for orchestrator unit tests.
    use super::*;
    use kiln_shared::artifact::ArtifactState;
    use serde_json::{Map, Value};

    #[derive(Default)]
    pub struct FakeLookup {
        pub artifacts: Vec<Artifact>,
        pub keys: Vec<SigningKey>,
    }

    impl FakeLookup {
        pub fn add(&mut self, category: &str, data: Value) -> i64 {
            let id = self.artifacts.len() as i64 + 1;
            self.artifacts.push(Artifact {
                id,
                category: category.to_owned(),
                data: data.as_object().cloned().unwrap_or_else(Map::new),
                files: Vec::new(),
                state: ArtifactState::Complete,
                work_request: None,
                created_by: None,
                created_at: chrono::Utc::now(),
            });
            id
        }
    }

    fn text(v: &Value) -> String {
        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
    }

    impl Lookup for FakeLookup {
        fn artifact(&self, id: i64) -> Result<Option<Artifact>, StoreError> {
            Ok(self.artifacts.iter().find(|a| a.id == id).cloned())
        }
        fn artifacts(
            &self,
            category: &str,
            data: &[(String, String)],
            limit: u32,
        ) -> Result<Vec<Artifact>, StoreError> {
            let mut found: Vec<Artifact> = self
                .artifacts
                .iter()
                .filter(|a| a.category == category)
                .filter(|a| data.iter().all(|(k, v)| a.data.get(k).map(text).as_deref() == Some(v.as_str())))
                .cloned()
                .collect();
            found.reverse();
            found.truncate(limit as usize);
            Ok(found)
        }
        fn signing_key(&self, fingerprint: &str) -> Result<Option<SigningKey>, StoreError> {
            Ok(self.keys.iter().find(|k| k.fingerprint == fingerprint).cloned())
        }
    }
}
