//! `debian_pipeline`'s task data: parsing, the checks that need no store,
//! and the signing key check made at submission and again before signing.

use crate::tasks;
use crate::workflows::lookup::Lookup;
use crate::workflows::sbuild::BuildRequest;
use crate::workflows::WorkflowError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Backends the agent's autopkgtest task runs on.
pub const AUTOPKGTEST_BACKENDS: &[&str] = &["unshare"];
/// lintian's `fail_on_severity` values.
const SEVERITIES: &[&str] = &["error", "warning", "info", "pedantic", "experimental", "overridden", "none"];

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineData {
    pub(super) source_artifact: i64,
    #[serde(default)]
    pub(super) vendor: Option<String>,
    pub(super) codename: String,
    pub(super) architectures: Vec<String>,
    #[serde(default)]
    pub(super) arch_all_host_architecture: Option<String>,
    #[serde(default = "yes")]
    pub(super) enable_lintian: bool,
    #[serde(default)]
    pub(super) lintian_fail_on_severity: Option<String>,
    #[serde(default = "yes")]
    pub(super) enable_autopkgtest: bool,
    #[serde(default)]
    pub(super) autopkgtest_backend: Option<String>,
    #[serde(default)]
    pub(super) signing_key: Option<String>,
    #[serde(default)]
    pub(super) require_approval: bool,
}

pub(super) fn parse(data: &Map<String, Value>) -> Result<PipelineData, WorkflowError> {
    serde_json::from_value(Value::Object(data.clone()))
        .map_err(|e| WorkflowError::invalid("task_data", format!("task_data of the debian_pipeline workflow: {e}")))
}

impl PipelineData {
    pub(super) fn build_request(&self) -> BuildRequest {
        BuildRequest {
            source_artifact: self.source_artifact,
            vendor: self.vendor.clone(),
            codename: self.codename.clone(),
            architectures: self.architectures.clone(),
            arch_all_host_architecture: self.arch_all_host_architecture.clone(),
        }
    }

    pub(super) fn autopkgtest_backend(&self) -> &str {
        self.autopkgtest_backend.as_deref().unwrap_or("auto")
    }

    pub(super) fn resolves_backend(&self) -> bool {
        self.enable_autopkgtest && self.autopkgtest_backend() == "auto"
    }

    pub(super) fn signing_key(&self) -> Option<String> {
        self.signing_key.as_deref().map(str::to_ascii_uppercase)
    }

    pub(super) fn check(&self) -> Result<(), WorkflowError> {
        self.build_request().check()?;
        let backend = self.autopkgtest_backend();
        if backend != "auto" && !AUTOPKGTEST_BACKENDS.contains(&backend) {
            return Err(WorkflowError::invalid(
                "autopkgtest_backend",
                format!(
                    "task_data.autopkgtest_backend must be auto or one of {} (the backends autopkgtest runs on), not {backend:?}",
                    AUTOPKGTEST_BACKENDS.join(", ")
                ),
            ));
        }
        if let Some(s) = self.lintian_fail_on_severity.as_deref().filter(|s| !SEVERITIES.contains(s)) {
            return Err(WorkflowError::invalid(
                "lintian_fail_on_severity",
                format!("task_data.lintian_fail_on_severity must be one of {}, not {s:?}", SEVERITIES.join(", ")),
            ));
        }
        if let Some(key) = self.signing_key.as_deref().filter(|k| !tasks::signing::is_fingerprint(k)) {
            return Err(WorkflowError::invalid(
                "signing_key",
                format!("task_data.signing_key must be a key fingerprint (40 or 64 hex digits), not {key:?}"),
            ));
        }
        Ok(())
    }
}

/// May `user` (or a workflow of `template`) sign with `fingerprint`?
pub(super) fn check_key(
    lookup: &dyn Lookup,
    fingerprint: &str,
    user: &str,
    template: Option<&str>,
) -> Result<(), WorkflowError> {
    let key = lookup.signing_key(fingerprint)?.ok_or_else(|| {
        WorkflowError::invalid(
            "signing_key",
            format!("task_data.signing_key: there is no signing key {fingerprint} (make one with generate_key)"),
        )
    })?;
    if key.revoked {
        return Err(WorkflowError::Forbidden {
            key: "signing_key".into(),
            message: format!("task_data.signing_key: signing key {fingerprint} is revoked"),
        });
    }
    if !key.may_sign(user, template) {
        let via = template.map(|t| format!(" nor template {t:?}")).unwrap_or_default();
        return Err(WorkflowError::Forbidden {
            key: "signing_key".into(),
            message: format!(
                "task_data.signing_key: neither {user:?}{via} may sign with key {fingerprint} \
                 (an admin grants it: kiln-coordinator key allow)"
            ),
        });
    }
    Ok(())
}
