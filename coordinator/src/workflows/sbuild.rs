//! The `sbuild` workflow: builds a source package once per architecture it
//! is asked for and supports, each on an environment found by lookup.
//!
//! `task_data`: `{source_artifact, vendor?, codename, architectures,
//! arch_all_host_architecture?}`. The builds are `architectures` ∩ the
//! .dsc's `Architecture` field (`any` and `linux-any` match every
//! architecture, `any-<cpu>` only that one). `all` must be asked for like
//! any other architecture; it is built once, with `build_components:
//! ["all"]`, on `arch_all_host_architecture` (default amd64), while the
//! other builds get `["any"]`. The environment of each build is the newest
//! complete `kiln:system-tarball` with that codename and architecture (and
//! vendor, where the tarball records one), variant `buildd` preferred.
//! A source package or an environment that cannot be found is refused at
//! submission (400 naming the key) and fails the workflow if it has gone
//! by the time it is populated.

use super::lookup::Lookup;
use super::{ChildSpec, Orchestrator, Submitter, WorkflowContext, WorkflowError};
use kiln_shared::artifact::{Artifact, ArtifactState};
use kiln_shared::TaskType;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub const SOURCE_PACKAGE: &str = "kiln:source-package";
pub const SYSTEM_TARBALL: &str = "kiln:system-tarball";
/// Where `all` is built unless the task data says otherwise.
pub const DEFAULT_ARCH_ALL_HOST: &str = "amd64";
/// Environments looked at per architecture (newest first).
const ENVIRONMENT_CANDIDATES: u32 = 200;

pub struct Sbuild;

/// The part of the task data that says what to build (shared with
/// `debian_pipeline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub source_artifact: i64,
    #[serde(default)]
    pub vendor: Option<String>,
    pub codename: String,
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_all_host_architecture: Option<String>,
}

/// One `sbuild` request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The architecture built: `all` or the host architecture.
    pub architecture: String,
    pub host_architecture: String,
    pub build_components: &'static str,
    pub environment: i64,
}

impl Build {
    pub fn step(&self) -> String {
        format!("sbuild-{}", self.architecture)
    }

    pub fn display_name(&self) -> String {
        if self.architecture == "all" {
            format!("sbuild all (on {})", self.host_architecture)
        } else {
            format!("sbuild {}", self.architecture)
        }
    }

    pub fn task_data(&self, source: i64) -> Map<String, Value> {
        let data = json!({
            "input": {"source_artifact": source},
            "environment": self.environment,
            "host_architecture": self.host_architecture,
            "build_components": [self.build_components],
            "backend": "unshare",
        });
        data.as_object().cloned().unwrap_or_default()
    }
}

fn parse(data: &Map<String, Value>) -> Result<BuildRequest, WorkflowError> {
    serde_json::from_value(Value::Object(data.clone()))
        .map_err(|e| WorkflowError::invalid("task_data", format!("task_data of the sbuild workflow: {e}")))
}

impl BuildRequest {
    pub fn vendor(&self) -> &str {
        self.vendor.as_deref().unwrap_or("debian")
    }

    pub fn arch_all_host(&self) -> &str {
        self.arch_all_host_architecture.as_deref().unwrap_or(DEFAULT_ARCH_ALL_HOST)
    }

    /// What can be checked without the store.
    pub fn check(&self) -> Result<(), WorkflowError> {
        if self.codename.trim().is_empty() {
            return Err(WorkflowError::invalid("codename", "task_data.codename is empty"));
        }
        if self.architectures.is_empty() || self.architectures.iter().any(|a| !is_arch_name(a)) {
            return Err(WorkflowError::invalid(
                "architectures",
                "task_data.architectures must list Debian architecture names (amd64, arm64, all...)",
            ));
        }
        if !is_arch_name(self.arch_all_host()) || self.arch_all_host() == "all" {
            return Err(WorkflowError::invalid(
                "arch_all_host_architecture",
                "task_data.arch_all_host_architecture must be an architecture that runs builds (e.g. amd64)",
            ));
        }
        Ok(())
    }

    /// The source package artifact, which must exist and be complete.
    pub fn source(&self, lookup: &dyn Lookup) -> Result<Artifact, WorkflowError> {
        let id = self.source_artifact;
        let artifact = lookup.artifact(id)?.ok_or_else(|| {
            WorkflowError::invalid("source_artifact", format!("task_data.source_artifact: artifact {id} not found"))
        })?;
        if artifact.category != SOURCE_PACKAGE {
            return Err(WorkflowError::invalid(
                "source_artifact",
                format!("task_data.source_artifact: artifact {id} is a {}, not a {SOURCE_PACKAGE}", artifact.category),
            ));
        }
        if artifact.state != ArtifactState::Complete {
            return Err(WorkflowError::invalid(
                "source_artifact",
                format!("task_data.source_artifact: artifact {id} is not complete (files still uploading)"),
            ));
        }
        Ok(artifact)
    }

    /// The builds to make, each with its environment.
    pub fn plan(&self, lookup: &dyn Lookup) -> Result<Vec<Build>, WorkflowError> {
        let source = self.source(lookup)?;
        let field = source.data.get("architecture").and_then(Value::as_str).unwrap_or_default().to_owned();
        let supported: Vec<&str> = field.split_whitespace().collect();
        let mut builds = Vec::new();
        for arch in &self.architectures {
            if builds.iter().any(|b: &Build| &b.architecture == arch) || !supported.iter().any(|s| matches(s, arch)) {
                continue;
            }
            let (host, components) =
                if arch == "all" { (self.arch_all_host().to_owned(), "all") } else { (arch.clone(), "any") };
            let environment = self.environment(lookup, &host)?;
            builds.push(Build {
                architecture: arch.clone(),
                host_architecture: host,
                build_components: components,
                environment,
            });
        }
        if builds.is_empty() {
            return Err(WorkflowError::invalid(
                "architectures",
                format!(
                    "task_data.architectures: none of {} is in the source package's Architecture field {field:?}",
                    self.architectures.join(", ")
                ),
            ));
        }
        Ok(builds)
    }

    /// The newest complete environment for `architecture`, `buildd` first.
    pub fn environment(&self, lookup: &dyn Lookup, architecture: &str) -> Result<i64, WorkflowError> {
        let filter =
            [("codename".to_owned(), self.codename.clone()), ("architecture".to_owned(), architecture.to_owned())];
        let found = lookup.artifacts(SYSTEM_TARBALL, &filter, ENVIRONMENT_CANDIDATES)?;
        let usable: Vec<&Artifact> = found
            .iter()
            .filter(|a| a.state == ArtifactState::Complete)
            .filter(|a| a.data.get("vendor").and_then(Value::as_str).is_none_or(|v| v == self.vendor()))
            .collect();
        let buildd = usable.iter().find(|a| a.data.get("variant").and_then(Value::as_str) == Some("buildd"));
        buildd.or(usable.first()).map(|a| a.id).ok_or_else(|| {
            WorkflowError::invalid(
                "architectures",
                format!(
                    "task_data.architectures: no environment for {architecture}: no complete {SYSTEM_TARBALL} \
                     with vendor {}, codename {}, architecture {architecture} (make one with the mmdebstrap task)",
                    self.vendor(),
                    self.codename
                ),
            )
        })
    }
}

/// `amd64`, `all`, `armhf`, `hurd-i386`...: lower-case letters, digits, '-'.
fn is_arch_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Does an Architecture field entry (`any`, `linux-any`, `any-arm64`,
/// `amd64`, `all`) cover `arch`?
fn matches(entry: &str, arch: &str) -> bool {
    if arch == "all" {
        return entry == "all";
    }
    match entry {
        "any" => true,
        // Debian's architectures without an OS prefix are Linux ones.
        "linux-any" => !arch.contains('-'),
        _ => entry == arch || entry.strip_prefix("any-") == Some(arch),
    }
}

/// Create the `sbuild` children for `builds`; returns their ids.
pub fn ensure_builds(
    ctx: &mut dyn WorkflowContext,
    source: i64,
    builds: &[Build],
    allow_failure: bool,
) -> Result<Vec<i64>, WorkflowError> {
    let mut ids = Vec::with_capacity(builds.len());
    for b in builds {
        let mut spec = ChildSpec::new(b.step(), TaskType::Worker, "sbuild", b.task_data(source))
            .with_workflow_data("display_name", json!(b.display_name()))
            .with_workflow_data("architecture", json!(b.architecture));
        if allow_failure {
            spec = spec.with_workflow_data("allow_failure", json!(true));
        }
        ids.push(ctx.ensure_child(spec)?);
    }
    Ok(ids)
}

impl Orchestrator for Sbuild {
    fn validate(&self, data: &Map<String, Value>) -> Result<(), WorkflowError> {
        parse(data)?.check()
    }

    fn check_submission(
        &self,
        data: &Map<String, Value>,
        _: &Submitter,
        lookup: &dyn Lookup,
    ) -> Result<(), WorkflowError> {
        parse(data)?.plan(lookup).map(|_| ())
    }

    fn populate(&self, ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError> {
        let request = parse(&ctx.workflow().task_data)?;
        let builds = request.plan(ctx.lookup())?;
        ensure_builds(ctx, request.source_artifact, &builds, false)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::workflows::lookup::fake::FakeLookup;

    /// A lookup with a source package of `architecture` (id 1) and
    /// environments for bookworm amd64 (minbase 2, buildd 3) and arm64 (4).
    pub fn lookup(architecture: &str) -> FakeLookup {
        let mut l = FakeLookup::default();
        l.add(SOURCE_PACKAGE, json!({"name": "hello", "version": "1", "architecture": architecture, "dsc": "h.dsc"}));
        for (arch, variant) in [("amd64", "minbase"), ("amd64", "buildd"), ("arm64", "buildd")] {
            l.add(
                SYSTEM_TARBALL,
                json!({"vendor": "debian", "codename": "bookworm", "architecture": arch, "variant": variant}),
            );
        }
        l.add(SYSTEM_TARBALL, json!({"vendor": "ubuntu", "codename": "bookworm", "architecture": "arm64"}));
        l
    }

    pub fn request(archs: &[&str]) -> BuildRequest {
        BuildRequest {
            source_artifact: 1,
            vendor: Some("debian".into()),
            codename: "bookworm".into(),
            architectures: archs.iter().map(|a| (*a).to_owned()).collect(),
            arch_all_host_architecture: None,
        }
    }

    fn planned(field: &str, archs: &[&str]) -> Vec<(String, String, &'static str, i64)> {
        let builds = request(archs).plan(&lookup(field)).expect("plan");
        builds.into_iter().map(|b| (b.architecture, b.host_architecture, b.build_components, b.environment)).collect()
    }

    #[test]
    fn builds_the_requested_architectures_the_dsc_supports() {
        assert_eq!(
            planned("any all", &["amd64", "arm64", "all"]),
            vec![
                ("amd64".into(), "amd64".into(), "any", 3),
                ("arm64".into(), "arm64".into(), "any", 4),
                ("all".into(), "amd64".into(), "all", 3),
            ]
        );
        assert_eq!(planned("amd64 all", &["arm64", "amd64"]), vec![("amd64".into(), "amd64".into(), "any", 3)]);
        assert_eq!(planned("all", &["amd64", "all", "arm64"]), vec![("all".into(), "amd64".into(), "all", 3)]);
        assert_eq!(planned("linux-any", &["arm64"]), vec![("arm64".into(), "arm64".into(), "any", 4)]);
        assert_eq!(planned("any-arm64", &["amd64", "arm64"]), vec![("arm64".into(), "arm64".into(), "any", 4)]);
    }

    #[test]
    fn arch_all_goes_to_its_host_and_the_buildd_variant_is_preferred() {
        let mut r = request(&["all"]);
        r.arch_all_host_architecture = Some("arm64".into());
        let b = r.plan(&lookup("all")).expect("plan");
        assert_eq!((b[0].host_architecture.as_str(), b[0].environment), ("arm64", 4));
        assert_eq!(b[0].task_data(1).get("build_components"), Some(&json!(["all"])));
        assert_eq!(b[0].step(), "sbuild-all");
    }

    #[test]
    fn refusals_name_the_key() {
        let err = request(&["amd64"]).plan(&lookup("arm64")).expect_err("no overlap");
        assert_eq!(err.key(), Some("architectures"), "{err}");
        let err = request(&["i386"]).plan(&lookup("any")).expect_err("no environment");
        assert!(err.to_string().contains("no environment for i386"), "{err}");
        let mut missing = request(&["amd64"]);
        missing.source_artifact = 99;
        assert_eq!(missing.plan(&lookup("any")).expect_err("missing").key(), Some("source_artifact"));
        let mut wrong = request(&["amd64"]);
        wrong.source_artifact = 2;
        assert!(wrong.plan(&lookup("any")).expect_err("a tarball").to_string().contains("not a kiln:source-package"));
        let mut ubuntu = request(&["arm64"]);
        ubuntu.vendor = Some("ubuntu".into());
        assert_eq!(ubuntu.plan(&lookup("any")).expect("the ubuntu tarball")[0].environment, 5);
        for (data, key) in [
            (json!({"source_artifact": 1, "codename": "bookworm", "architectures": []}), "architectures"),
            (json!({"source_artifact": 1, "codename": "", "architectures": ["amd64"]}), "codename"),
            (json!({"source_artifact": 1, "codename": "bookworm", "architectures": ["amd64"], "x": 1}), "task_data"),
            (
                json!({"source_artifact": 1, "codename": "b", "architectures": ["amd64"], "arch_all_host_architecture": "all"}),
                "arch_all_host_architecture",
            ),
        ] {
            let err = Sbuild.validate(data.as_object().expect("object")).expect_err(key);
            assert_eq!(err.key(), Some(key), "{err}");
        }
    }
}
