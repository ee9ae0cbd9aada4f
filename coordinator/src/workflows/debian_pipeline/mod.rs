//! The `debian_pipeline` workflow: a source package from build to signed,
//! approved upload, in stages that `internal/workflow` callbacks open once
//! the stage before has results:
//!
//! 1. **build**: the `sbuild` workflow's builds (see [`super::sbuild`]) and,
//!    when autopkgtest's backend is `auto`, `extract_test_restrictions`;
//!    then the callback `after-build`, which
//! 2. **tests**: creates `lintian` on every binary package built and one
//!    `autopkgtest` per architecture built (arch-all packages join each),
//!    naming the artifact ids the builds reported; `auto` becomes a backend
//!    that provides what the tests need (`needs`), that the template's
//!    `allowed.autopkgtest_backend` lists and that runs autopkgtest
//!    (only `unshare` does so far). Then `after-tests`, which
//! 3. **signing**: when `signing_key` is given, `debsign`s each build's
//!    `kiln:upload` on a signing agent; then `after-signing`, which
//! 4. **approval**: when `require_approval`, a `wait/external_approval`
//!    (`needs_input`) that its creator or an admin completes.
//!
//! Stage nodes carry `allow_failure` so the callback after them runs
//! whatever happens; a callback that finds a node that did not succeed
//! ends in `failure` naming it (and how to read its log), which ends the
//! workflow in `failure` without going further.

mod data;

use super::lookup::Lookup;
use super::sbuild;
use super::{ChildInfo, ChildSpec, Orchestrator, Submitter, WorkflowContext, WorkflowError};
use crate::tasks;
pub use data::AUTOPKGTEST_BACKENDS;
use data::{check_key, parse, PipelineData};
use kiln_shared::TaskType;
use serde_json::{json, Map, Value};

pub struct DebianPipeline;

/// The children whose step starts with `prefix`.
fn with_prefix<'a>(children: &'a [ChildInfo], prefix: &str) -> Vec<&'a ChildInfo> {
    children.iter().filter(|c| c.step.as_deref().is_some_and(|s| s.starts_with(prefix))).collect()
}

fn step_of(c: &ChildInfo) -> &str {
    c.step.as_deref().unwrap_or_default()
}

/// Fail the stage `step` closes if any of `nodes` did not succeed.
fn check_stage(step: &str, nodes: &[&ChildInfo]) -> Result<(), WorkflowError> {
    let failed: Vec<String> = nodes
        .iter()
        .filter(|c| !c.succeeded())
        .map(|c| {
            let ended = c.result.map_or_else(|| c.status.to_string(), |r| r.to_string());
            let errors = c.output_data.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
            let first = errors.first().and_then(|e| e.get("message")).and_then(Value::as_str);
            let why = first.map(|m| format!(": {m}")).unwrap_or_default();
            format!("{} (work request {}) ended {ended}{why}; its log: kiln logs {}", step_of(c), c.id, c.id)
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(WorkflowError::StageFailed { step: step.to_owned(), message: failed.join("; ") })
}

fn ids(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_i64).collect(),
        Some(v) => v.as_i64().into_iter().collect(),
        None => Vec::new(),
    }
}

/// A finished build as the later stages use it.
struct Built {
    architecture: String,
    environment: Option<i64>,
    binaries: Vec<i64>,
    upload: Option<i64>,
}

fn built(builds: &[&ChildInfo]) -> Vec<Built> {
    builds
        .iter()
        .map(|c| Built {
            architecture: step_of(c).trim_start_matches("sbuild-").to_owned(),
            environment: c.task_data.get("environment").and_then(Value::as_i64),
            binaries: ids(c.output_data.get("binary_packages")),
            upload: c.output_data.get("upload").and_then(Value::as_i64),
        })
        .collect()
}

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn callback(step: &str, display_name: &str, deps: Vec<i64>) -> ChildSpec {
    ChildSpec::new(step, TaskType::Internal, "workflow", Map::new())
        .with_dependencies(deps)
        .with_workflow_data("display_name", json!(display_name))
}

/// A stage node: the callback after it runs whatever its result.
fn stage_node(step: String, task_type: TaskType, name: &str, data: Value, display_name: String) -> ChildSpec {
    ChildSpec::new(step, task_type, name, map(data))
        .with_workflow_data("display_name", json!(display_name))
        .with_workflow_data("allow_failure", json!(true))
}

impl DebianPipeline {
    fn after_build(&self, ctx: &mut dyn WorkflowContext, data: &PipelineData) -> Result<(), WorkflowError> {
        let children = ctx.children()?;
        let builds = with_prefix(&children, "sbuild-");
        check_stage("after-build", &builds)?;
        let built = built(&builds);
        let mut tests = Vec::new();
        if data.enable_lintian {
            tests.push(ctx.ensure_child(self.lintian(data, &built))?);
        }
        if data.enable_autopkgtest {
            let backend = self.autopkgtest_backend(ctx, data, &children)?;
            for spec in self.autopkgtests(data, &built, &backend) {
                tests.push(ctx.ensure_child(spec)?);
            }
        }
        if tests.is_empty() {
            return self.signing(ctx, data, &children);
        }
        ctx.ensure_child(callback("after-tests", "check lintian and autopkgtest", tests))?;
        Ok(())
    }

    fn lintian(&self, data: &PipelineData, built: &[Built]) -> ChildSpec {
        // Lint where arch:all was built, else on the first build's host.
        let env = built.iter().find(|b| b.architecture == "all").or(built.first()).and_then(|b| b.environment);
        let binaries: Vec<i64> = built.iter().flat_map(|b| b.binaries.iter().copied()).collect();
        let mut task = json!({
            "input": {"source_artifact": data.source_artifact, "binary_artifacts": binaries},
            "environment": env,
        });
        if let (Some(s), Some(obj)) = (&data.lintian_fail_on_severity, task.as_object_mut()) {
            obj.insert("fail_on_severity".into(), json!(s));
        }
        stage_node("lintian".into(), TaskType::Worker, "lintian", task, "lintian".into())
    }

    /// One autopkgtest per architecture-specific build, with the arch:all
    /// packages; only arch:all packages are tested where they were built.
    fn autopkgtests(&self, data: &PipelineData, built: &[Built], backend: &str) -> Vec<ChildSpec> {
        let all: Vec<i64> = built.iter().filter(|b| b.architecture == "all").flat_map(|b| b.binaries.clone()).collect();
        let arch_builds: Vec<&Built> = built.iter().filter(|b| b.architecture != "all").collect();
        let targets: Vec<&Built> = if arch_builds.is_empty() {
            built.iter().filter(|b| b.architecture == "all").collect()
        } else {
            arch_builds
        };
        targets
            .into_iter()
            .map(|b| {
                let mut binaries = b.binaries.clone();
                if b.architecture != "all" {
                    binaries.extend(all.iter().copied());
                }
                let task = json!({
                    "input": {"source_artifact": data.source_artifact, "binary_artifacts": binaries},
                    "environment": b.environment,
                    "backend": backend,
                });
                let label = format!("autopkgtest {} ({backend})", b.architecture);
                stage_node(format!("autopkgtest-{}", b.architecture), TaskType::Worker, "autopkgtest", task, label)
            })
            .collect()
    }

    /// `auto` becomes a backend that provides what the tests need, that the
    /// template allows and that autopkgtest runs on.
    fn autopkgtest_backend(
        &self,
        ctx: &mut dyn WorkflowContext,
        data: &PipelineData,
        children: &[ChildInfo],
    ) -> Result<String, WorkflowError> {
        if !data.resolves_backend() {
            return Ok(data.autopkgtest_backend().to_owned());
        }
        let extract = with_prefix(children, "test-restrictions");
        check_stage("after-build", &extract)?;
        let output = extract.first().map(|c| c.output_data.clone()).unwrap_or_default();
        let needs = output.get("needs").and_then(Value::as_str);
        let restrictions = output.get("restrictions").cloned().unwrap_or(json!([]));
        let fitting = tasks::acceptable_backends("auto", needs)
            .map_err(|e| WorkflowError::invalid("autopkgtest_backend", e.message))?;
        let allowed = ctx.workflow().allowed("autopkgtest_backend");
        let allows = |b: &str| allowed.as_ref().is_none_or(|list| list.iter().any(|a| a.as_str() == Some(b)));
        let usable = fitting.iter().find(|b| AUTOPKGTEST_BACKENDS.contains(&b.as_str()) && allows(b));
        usable.cloned().ok_or_else(|| {
            let shown = allowed.map_or_else(
                || "any".to_owned(),
                |l| l.iter().map(|v| v.as_str().unwrap_or("?").to_owned()).collect::<Vec<_>>().join(", "),
            );
            WorkflowError::invalid(
                "autopkgtest_backend",
                format!(
                    "autopkgtest_backend auto: the tests need a {} (restrictions {restrictions}), which only {} \
                     provide; the template allows {shown} and autopkgtest runs only on {}",
                    needs.unwrap_or("sandbox"),
                    fitting.join(", "),
                    AUTOPKGTEST_BACKENDS.join(", ")
                ),
            )
        })
    }

    fn after_tests(&self, ctx: &mut dyn WorkflowContext, data: &PipelineData) -> Result<(), WorkflowError> {
        let children = ctx.children()?;
        let mut tests = with_prefix(&children, "lintian");
        tests.extend(with_prefix(&children, "autopkgtest-"));
        check_stage("after-tests", &tests)?;
        self.signing(ctx, data, &children)
    }

    fn signing(
        &self,
        ctx: &mut dyn WorkflowContext,
        data: &PipelineData,
        children: &[ChildInfo],
    ) -> Result<(), WorkflowError> {
        let Some(key) = data.signing_key() else {
            return self.approval(ctx, data);
        };
        let info = ctx.workflow();
        let user = info.created_by.clone().unwrap_or_default();
        let template = info.workflow_data.get("workflow_template").and_then(Value::as_str).map(str::to_owned);
        check_key(ctx.lookup(), &key, &user, template.as_deref())?;
        let uploads: Vec<(String, i64)> = built(&with_prefix(children, "sbuild-"))
            .into_iter()
            .filter_map(|b| b.upload.map(|u| (b.architecture, u)))
            .collect();
        if uploads.is_empty() {
            return Err(WorkflowError::StageFailed {
                step: "signing".into(),
                message: "nothing to sign: the builds reported no kiln:upload".into(),
            });
        }
        let mut signed = Vec::new();
        for (arch, upload) in uploads {
            let task = json!({"key": key, "unsigned": upload});
            let label = format!("debsign {arch} upload");
            signed.push(ctx.ensure_child(stage_node(
                format!("debsign-{arch}"),
                TaskType::Signing,
                "debsign",
                task,
                label,
            ))?);
        }
        ctx.ensure_child(callback("after-signing", "check signatures", signed))?;
        Ok(())
    }

    fn after_signing(&self, ctx: &mut dyn WorkflowContext, data: &PipelineData) -> Result<(), WorkflowError> {
        let children = ctx.children()?;
        check_stage("after-signing", &with_prefix(&children, "debsign-"))?;
        self.approval(ctx, data)
    }

    fn approval(&self, ctx: &mut dyn WorkflowContext, data: &PipelineData) -> Result<(), WorkflowError> {
        if data.require_approval {
            let spec = ChildSpec::new("approval", TaskType::Wait, "external_approval", Map::new())
                .with_workflow_data("display_name", json!("approve the upload"));
            ctx.ensure_child(spec)?;
        }
        Ok(())
    }
}

impl Orchestrator for DebianPipeline {
    fn validate(&self, data: &Map<String, Value>) -> Result<(), WorkflowError> {
        parse(data)?.check()
    }

    fn check_submission(
        &self,
        data: &Map<String, Value>,
        submitter: &Submitter,
        lookup: &dyn Lookup,
    ) -> Result<(), WorkflowError> {
        let data = parse(data)?;
        data.build_request().plan(lookup)?;
        if let Some(key) = data.signing_key() {
            check_key(lookup, &key, &submitter.user, submitter.template.as_deref())?;
        }
        Ok(())
    }

    fn populate(&self, ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError> {
        let data = parse(&ctx.workflow().task_data)?;
        let builds = data.build_request().plan(ctx.lookup())?;
        let mut first_stage = sbuild::ensure_builds(ctx, data.source_artifact, &builds, true)?;
        if data.resolves_backend() {
            let env = builds.first().map(|b| b.environment);
            let task = json!({"input": {"source_artifact": data.source_artifact}, "environment": env});
            let label = "extract test restrictions".to_owned();
            let spec =
                stage_node("test-restrictions".into(), TaskType::Worker, "extract_test_restrictions", task, label);
            first_stage.push(ctx.ensure_child(spec)?);
        }
        ctx.ensure_child(callback("after-build", "plan lintian and autopkgtest", first_stage))?;
        Ok(())
    }

    fn callback(&self, ctx: &mut dyn WorkflowContext, step: &str) -> Result<(), WorkflowError> {
        let data = parse(&ctx.workflow().task_data)?;
        match step {
            "after-build" => self.after_build(ctx, &data),
            "after-tests" => self.after_tests(ctx, &data),
            "after-signing" => self.after_signing(ctx, &data),
            other => Err(WorkflowError::invalid("step", format!("debian_pipeline has no step {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests;
