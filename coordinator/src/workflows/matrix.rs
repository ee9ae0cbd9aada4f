//! The `matrix` workflow: one worker task per `(architecture, backend)`
//! target, then a synchronization point, then an `aggregate_results` server
//! task that writes a summary artifact.
//!
//! `task_data`: `{environment, command: [argv], targets: [{architecture,
//! backend}], env?, timeout?, task?}`. `task` is `command` (the default) or
//! `noop`, which runs a worker `noop` per target and takes no environment,
//! command or backend (a fleet smoke test, and the benchmark's DAG).
//!
//! The targets tolerate failure (`allow_failure`), so that the summary is
//! written whatever happens; `aggregate_results` then fails if any target
//! did not succeed, which makes the workflow end in `failure`.
//! A template's `allowed` list for `targets.backend` narrows what `auto`
//! resolves to.

use super::{ChildSpec, Orchestrator, WorkflowContext, WorkflowError};
use crate::tasks;
use kiln_shared::TaskType;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// More targets than this is a mistake, not a matrix.
pub const MAX_TARGETS: usize = 100_000;

pub struct Matrix;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixData {
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    environment: Option<i64>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Map<String, Value>>,
    #[serde(default)]
    timeout: Option<u64>,
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    architecture: String,
    #[serde(default)]
    backend: Option<String>,
}

fn parse(data: &Map<String, Value>) -> Result<MatrixData, WorkflowError> {
    serde_json::from_value(Value::Object(data.clone()))
        .map_err(|e| WorkflowError::invalid("task_data", format!("task_data of the matrix workflow: {e}")))
}

impl MatrixData {
    fn task(&self) -> &str {
        self.task.as_deref().unwrap_or("command")
    }

    /// The worker task's name and data for target `t`.
    fn child_data(&self, t: &Target) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("host_architecture".into(), json!(t.architecture));
        if self.task() == "command" {
            data.insert("environment".into(), json!(self.environment));
            data.insert("backend".into(), json!(t.backend));
            data.insert("command".into(), json!(self.command));
            if let Some(env) = &self.env {
                data.insert("env".into(), Value::Object(env.clone()));
            }
            if let Some(timeout) = self.timeout {
                data.insert("timeout".into(), json!(timeout));
            }
        }
        data
    }

    fn check(&self) -> Result<(), WorkflowError> {
        match self.task() {
            "command" => {}
            "noop" => {
                let extra = [
                    ("environment", self.environment.is_some()),
                    ("command", self.command.is_some()),
                    ("env", self.env.is_some()),
                    ("timeout", self.timeout.is_some()),
                ];
                if let Some((key, _)) = extra.iter().find(|(_, given)| *given) {
                    return Err(WorkflowError::invalid(*key, format!("task_data.{key} is not used with task noop")));
                }
                if self.targets.iter().any(|t| t.backend.is_some()) {
                    return Err(WorkflowError::invalid("targets.backend", "noop targets take no backend"));
                }
            }
            other => {
                return Err(WorkflowError::invalid(
                    "task",
                    format!("task_data.task must be \"command\" or \"noop\", not {other:?}"),
                ))
            }
        }
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err(WorkflowError::invalid(
                "targets",
                format!("task_data.targets must list between 1 and {MAX_TARGETS} targets"),
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.architecture.trim().is_empty() {
                return Err(WorkflowError::invalid(
                    "targets.architecture",
                    format!("targets[{i}].architecture is empty"),
                ));
            }
            tasks::validate(TaskType::Worker, self.task(), &self.child_data(t))
                .map_err(|e| WorkflowError::invalid(format!("targets[{i}]"), format!("targets[{i}]: {}", e.message)))?;
        }
        Ok(())
    }
}

/// The backends `auto` may become for a target, given the template's
/// allowed list for `targets.backend`; `None` leaves the task's own set.
fn resolve_auto(backend: Option<&str>, allowed: Option<&[Value]>) -> Result<Option<Vec<String>>, WorkflowError> {
    let (Some("auto"), Some(allowed)) = (backend, allowed) else {
        return Ok(None);
    };
    let fitting = tasks::acceptable_backends("auto", None).map_err(|e| WorkflowError::invalid("backend", e.message))?;
    let narrowed: Vec<String> =
        fitting.into_iter().filter(|b| allowed.iter().any(|a| a.as_str() == Some(b.as_str()))).collect();
    if narrowed.is_empty() {
        return Err(WorkflowError::invalid(
            "targets.backend",
            "targets.backend: auto resolves to no backend the template allows",
        ));
    }
    Ok(Some(narrowed))
}

impl Orchestrator for Matrix {
    fn validate(&self, data: &Map<String, Value>) -> Result<(), WorkflowError> {
        parse(data)?.check()
    }

    fn populate(&self, ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError> {
        let data = parse(&ctx.workflow().task_data)?;
        let allowed = ctx.workflow().allowed("targets.backend");
        let task = data.task().to_owned();
        let mut ids = Vec::with_capacity(data.targets.len());
        for (i, t) in data.targets.iter().enumerate() {
            let backend = t.backend.as_deref();
            let label = format!("{}/{}", t.architecture, backend.unwrap_or(&task));
            let mut spec = ChildSpec::new(format!("{task}-{i}"), TaskType::Worker, &task, data.child_data(t))
                .with_workflow_data("allow_failure", json!(true))
                .with_workflow_data("display_name", json!(label))
                .with_workflow_data("target", json!({"architecture": t.architecture, "backend": backend}));
            spec.backends = resolve_auto(backend, allowed.as_deref())?;
            ids.push(ctx.ensure_child(spec)?);
        }
        let sync = ctx.ensure_child(
            ChildSpec::new("sync", TaskType::Internal, "synchronization_point", Map::new())
                .with_dependencies(ids.clone())
                .with_workflow_data("display_name", json!("all targets done")),
        )?;
        let mut summary = Map::new();
        summary.insert("work_requests".into(), json!(ids));
        ctx.ensure_child(
            ChildSpec::new("aggregate", TaskType::Server, "aggregate_results", summary)
                .with_dependencies(vec![sync])
                .with_workflow_data("display_name", json!("summary")),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::{ChildInfo, WorkflowInfo};
    use std::collections::HashMap;

    /// An in-memory context: children by step.
    pub(crate) struct FakeContext {
        pub info: WorkflowInfo,
        pub created: Vec<ChildSpec>,
        by_step: HashMap<String, i64>,
        lookup: crate::workflows::lookup::fake::FakeLookup,
    }

    impl FakeContext {
        pub fn new(task_data: Value, workflow_data: Value) -> Self {
            let info = WorkflowInfo {
                id: 1,
                task_name: "matrix".into(),
                task_data: task_data.as_object().cloned().unwrap_or_default(),
                workflow_data: workflow_data.as_object().cloned().unwrap_or_default(),
                priority: 0,
                created_by: Some("alice".into()),
            };
            FakeContext { info, created: Vec::new(), by_step: HashMap::new(), lookup: Default::default() }
        }
    }

    impl WorkflowContext for FakeContext {
        fn workflow(&self) -> &WorkflowInfo {
            &self.info
        }
        fn children(&mut self) -> Result<Vec<ChildInfo>, WorkflowError> {
            Ok(Vec::new())
        }
        fn ensure_child(&mut self, spec: ChildSpec) -> Result<i64, WorkflowError> {
            if let Some(id) = self.by_step.get(&spec.step) {
                return Ok(*id);
            }
            let id = 100 + self.created.len() as i64;
            self.by_step.insert(spec.step.clone(), id);
            self.created.push(spec);
            Ok(id)
        }
        fn lookup(&self) -> &dyn crate::workflows::Lookup {
            &self.lookup
        }
    }

    fn data() -> Value {
        json!({"environment": 7, "command": ["make", "check"],
               "targets": [{"architecture": "amd64", "backend": "unshare"}, {"architecture": "i386", "backend": "auto"}]})
    }

    #[test]
    fn populates_targets_then_a_sync_point_then_the_summary_and_only_once() {
        let mut ctx = FakeContext::new(data(), json!({"allowed": {"targets.backend": ["unshare", "incus-lxc"]}}));
        Matrix.populate(&mut ctx).expect("populate");
        Matrix.populate(&mut ctx).expect("populate again");
        let c = &ctx.created;
        assert_eq!(c.len(), 4, "idempotent: {c:?}");
        assert_eq!(
            (c[0].task_name.as_str(), c[0].task_data.get("host_architecture")),
            ("command", Some(&json!("amd64")))
        );
        assert_eq!(c[0].backends, None, "a named backend stays as it is");
        assert_eq!(c[1].backends, Some(vec!["unshare".to_owned(), "incus-lxc".to_owned()]), "auto narrowed");
        assert_eq!(c[1].workflow_data.get("allow_failure"), Some(&json!(true)));
        assert_eq!((c[2].task_name.as_str(), &c[2].dependencies), ("synchronization_point", &vec![100, 101]));
        assert_eq!((c[3].task_name.as_str(), &c[3].dependencies), ("aggregate_results", &vec![102]));
        assert_eq!(c[3].task_data.get("work_requests"), Some(&json!([100, 101])));
    }

    #[test]
    fn auto_that_the_template_forbids_everywhere_is_an_error() {
        let mut ctx = FakeContext::new(data(), json!({"allowed": {"targets.backend": ["docker"]}}));
        let err = Matrix.populate(&mut ctx).expect_err("nothing allowed");
        assert!(err.to_string().contains("targets.backend"), "{err}");
    }

    #[test]
    fn refuses_bad_input_naming_the_key() {
        let bad = [
            (json!({"environment": 7, "command": ["x"], "targets": []}), "targets"),
            (json!({"environment": 7, "command": ["x"]}), "targets"),
            (
                json!({"environment": 7, "command": ["x"], "targets": [{"architecture": "amd64", "backend": "docker"}]}),
                "docker",
            ),
            (json!({"environment": 7, "targets": [{"architecture": "amd64", "backend": "unshare"}]}), "command"),
            (
                json!({"environment": 7, "command": ["x"], "targets": [{"architecture": "amd64"}], "colour": 1}),
                "colour",
            ),
            (json!({"task": "noop", "command": ["x"], "targets": [{"architecture": "amd64"}]}), "command"),
            (json!({"task": "sbuild", "targets": [{"architecture": "amd64"}]}), "task"),
        ];
        for (d, word) in bad {
            let err = Matrix.validate(d.as_object().expect("object")).expect_err(&d.to_string());
            assert!(err.to_string().contains(word), "{d}: {err}");
        }
        let noop = json!({"task": "noop", "targets": [{"architecture": "amd64"}, {"architecture": "arm64"}]});
        Matrix.validate(noop.as_object().expect("object")).expect("noop matrix");
        Matrix.validate(data().as_object().expect("object")).expect("command matrix");
    }
}
