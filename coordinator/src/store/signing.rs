//! Signing keys as the coordinator knows them (issue 8): fingerprint,
//! purpose, public key artifact and access list. Private keys never reach
//! the coordinator; only signing agents hold them.

use super::StoreResult;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A key a signing agent generated, with who may sign with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub fingerprint: String,
    pub purpose: String,
    pub description: String,
    pub public_key_artifact: Option<i64>,
    /// The signing agent holding the private key.
    pub worker: Option<String>,
    /// Users who may request signatures with it.
    pub users: Vec<String>,
    /// Workflow templates whose workflows may request signatures with it.
    pub workflow_templates: Vec<String>,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
}

/// `PUT /api/1/signing-keys/{fingerprint}/access`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAccess {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub workflow_templates: Vec<String>,
    /// Once revoked, a key signs nothing more; revocation is final.
    #[serde(default)]
    pub revoked: bool,
}

impl SigningKey {
    /// May `user` (or a workflow of `template`) sign with this key?
    pub fn may_sign(&self, user: &str, template: Option<&str>) -> bool {
        !self.revoked
            && (self.users.iter().any(|u| u == user)
                || template.is_some_and(|t| self.workflow_templates.iter().any(|w| w == t)))
    }
}

pub trait SigningKeyStore {
    /// Record a newly generated key, with an empty access list.
    fn add_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    fn signing_key(&self, fingerprint: &str) -> StoreResult<Option<SigningKey>>;
    fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Replace the access list; `NotFound` for an unknown key.
    fn set_key_access(&self, fingerprint: &str, access: &KeyAccess) -> StoreResult<SigningKey>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_users_and_templates_sign_and_never_after_revocation() {
        let mut k = SigningKey {
            fingerprint: "F".repeat(40),
            purpose: "openpgp".into(),
            description: String::new(),
            public_key_artifact: None,
            worker: None,
            users: vec!["alice".into()],
            workflow_templates: vec!["release".into()],
            revoked: false,
            created_at: Utc::now(),
        };
        assert!(k.may_sign("alice", None) && k.may_sign("bob", Some("release")));
        assert!(!k.may_sign("bob", None) && !k.may_sign("bob", Some("other")));
        k.revoked = true;
        assert!(!k.may_sign("alice", None));
    }
}
