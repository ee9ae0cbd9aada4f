//! The registry of `(task_type, task_name)`: which tasks exist, their
//! version, how their `task_data` is validated, and what they need from an
//! agent. Anything not listed here is refused at creation.

mod debian;
mod kinds;
pub mod signing;
mod validate;
pub mod wait;

pub use kinds::{wake_at, workflow_data};

use crate::scheduler::requirements::{Constraint, Requirements};
use kiln_shared::{TaskType, WorkerRole};
use serde_json::{Map, Value};
use validate::Fields;

pub const BACKENDS: &[&str] = &["unshare", "incus-lxc", "incus-vm", "qemu"];
const CONTAINER_BACKENDS: &[&str] = &["unshare", "incus-lxc"];
const MACHINE_BACKENDS: &[&str] = &["incus-vm", "qemu"];

/// Why `task_data` was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub code: &'static str,
    pub message: String,
}

/// Automatic retries of `error` (DESIGN §3).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

impl TaskError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        TaskError { code, message: message.into() }
    }
}

/// What creation learns from a valid request.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// For work an agent runs; `None` for work the coordinator handles.
    pub requirements: Option<Requirements>,
    /// The environment artifact, whose architecture may fill in the
    /// requirement when the task names none.
    pub environment: Option<i64>,
}

/// Version of a task as agents must advertise it (`<task>:version`).
pub fn version_of(task_type: TaskType, name: &str) -> Option<u32> {
    match (task_type, name) {
        (TaskType::Worker, "noop" | "command") => Some(1),
        (TaskType::Worker, name) if debian::NAMES.contains(&name) => Some(1),
        (TaskType::Internal, "synchronization_point" | "workflow")
        | (TaskType::Server, "aggregate_results" | "expire_artifacts")
        | (TaskType::Wait, "delay" | "external_approval") => Some(0),
        (TaskType::Workflow, name) if crate::workflows::orchestrator(name).is_some() => Some(0),
        (TaskType::Signing, "generate_key" | "sign" | "debsign") => Some(signing::VERSION),
        _ => None,
    }
}

/// Validate `task_data` and derive requirements.
pub fn validate(task_type: TaskType, name: &str, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    let Some(version) = version_of(task_type, name) else {
        return Err(TaskError::new("unknown-task", format!("there is no {task_type} task named {name:?}")));
    };
    match (task_type, name) {
        (TaskType::Worker, "noop") => {
            let f = Fields::new(data, &["host_architecture", "constraints"])?;
            Ok(Validated { requirements: Some(worker_requirements(name, version, &f)?), environment: None })
        }
        (TaskType::Worker, "command") => command(version, data),
        (TaskType::Worker, name) if debian::NAMES.contains(&name) => debian::validate(name, version, data),
        (TaskType::Workflow, _) => kinds::workflow(name, data),
        (TaskType::Server, _) => kinds::server(name, data),
        (TaskType::Wait, _) => kinds::wait(name, data),
        (TaskType::Signing, _) => signing::validate(name, data),
        _ => {
            Fields::new(data, &[])?;
            Ok(Validated { requirements: None, environment: None })
        }
    }
}

/// Requirements every worker task shares: role, version, architecture,
/// explicit constraints.
fn worker_requirements(name: &str, version: u32, f: &Fields<'_>) -> Result<Requirements, TaskError> {
    let mut req = Requirements::new(WorkerRole::Worker, name, version);
    req.architecture = f.string("host_architecture")?.map(str::to_owned);
    if let Some(list) = f.get("constraints") {
        req.constraints = serde_json::from_value::<Vec<Constraint>>(list.clone())
            .map_err(|e| TaskError::new("invalid-task-data", format!("task_data.constraints: {e}")))?;
        for c in &req.constraints {
            if c.op == crate::scheduler::requirements::Op::Regex {
                let pattern = c.value.as_str().ok_or_else(|| {
                    TaskError::new("invalid-task-data", format!("constraint on {:?}: a regex must be a string", c.key))
                })?;
                regex::Regex::new(pattern).map_err(|e| {
                    TaskError::new("invalid-task-data", format!("constraint on {:?}: invalid regex: {e}", c.key))
                })?;
            }
        }
    }
    Ok(req)
}

fn command(version: u32, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    let f = Fields::new(
        data,
        &[
            "environment",
            "backend",
            "command",
            "env",
            "timeout",
            "network",
            "min_memory",
            "min_disk",
            "executables",
            "needs",
            "constraints",
            "host_architecture",
        ],
    )?;
    let environment = f.required_id("environment")?;
    let backend = f.required_string("backend")?;
    let argv = f.string_list("command")?.unwrap_or_default();
    if argv.is_empty() {
        return Err(TaskError::new("invalid-task-data", "task_data.command must be a non-empty list of strings"));
    }
    f.string_map("env")?;
    if f.positive_int("timeout")? == Some(0) {
        return Err(TaskError::new("invalid-task-data", "task_data.timeout must be at least 1 second"));
    }
    f.boolean("network")?;
    let needs = f.string("needs")?;
    let mut req = worker_requirements("command", version, &f)?;
    req.backends = acceptable_backends(backend, needs)?;
    req.min_memory = f.positive_int("min_memory")?;
    req.min_disk = f.positive_int("min_disk")?;
    req.executables = f.string_list("executables")?.unwrap_or_default();
    Ok(Validated { requirements: Some(req.normalized()), environment: Some(environment) })
}

/// `auto` becomes the set of backends that meet the task's needs; a named
/// backend must agree with them.
pub fn acceptable_backends(backend: &str, needs: Option<&str>) -> Result<Vec<String>, TaskError> {
    let fitting: &[&str] = match needs {
        None => BACKENDS,
        Some("container") => CONTAINER_BACKENDS,
        Some("machine") => MACHINE_BACKENDS,
        Some(other) => {
            return Err(TaskError::new(
                "invalid-task-data",
                format!("task_data.needs must be \"container\" or \"machine\", not {other:?}"),
            ))
        }
    };
    if backend == "auto" {
        return Ok(fitting.iter().map(|b| (*b).to_owned()).collect());
    }
    if !BACKENDS.contains(&backend) {
        return Err(TaskError::new(
            "invalid-task-data",
            format!("task_data.backend {backend:?} is not one of auto, {}", BACKENDS.join(", ")),
        ));
    }
    if !fitting.contains(&backend) {
        return Err(TaskError::new(
            "invalid-task-data",
            format!("backend {backend:?} does not provide a {}", needs.unwrap_or_default()),
        ));
    }
    Ok(vec![backend.to_owned()])
}

/// Artifact ids named by a task's data (`environment`, `unsigned`,
/// `*_artifact`, `*_artifacts`, at any depth): what its worker may read.
pub fn referenced_artifacts(data: &Map<String, Value>) -> Vec<i64> {
    let mut ids = Vec::new();
    for (key, value) in data {
        match value {
            Value::Object(inner) => ids.extend(referenced_artifacts(inner)),
            Value::Number(n) if key == "environment" || key == "unsigned" || key.ends_with("_artifact") => {
                ids.extend(n.as_i64())
            }
            Value::Array(items) if key.ends_with("_artifacts") => ids.extend(items.iter().filter_map(Value::as_i64)),
            _ => {}
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn command_derives_requirements() {
        let v = validate(
            TaskType::Worker,
            "command",
            &data(json!({"environment": 7, "backend": "auto", "needs": "container", "command": ["true"],
                         "min_memory": 1024, "executables": ["make", "gcc", "make"], "host_architecture": "arm64"})),
        )
        .expect("valid");
        let req = v.requirements.expect("requirements");
        assert_eq!(req.backends, vec!["incus-lxc", "unshare"]);
        assert_eq!(req.executables, vec!["gcc", "make"]);
        assert_eq!(req.architecture.as_deref(), Some("arm64"));
        assert_eq!(req.min_memory, Some(1024));
        assert_eq!(v.environment, Some(7));
    }

    #[test]
    fn refuses_bad_task_data_with_the_key_named() {
        let bad = [
            (json!({"backend": "unshare", "command": ["x"]}), "environment"),
            (json!({"environment": 1, "backend": "docker", "command": ["x"]}), "docker"),
            (json!({"environment": 1, "backend": "qemu", "needs": "container", "command": ["x"]}), "qemu"),
            (json!({"environment": 1, "backend": "unshare", "command": []}), "command"),
            (json!({"environment": 1, "backend": "unshare", "command": [1]}), "command"),
            (json!({"environment": 1, "backend": "unshare", "command": ["x"], "colour": 1}), "colour"),
            (json!({"environment": "7", "backend": "unshare", "command": ["x"]}), "environment"),
            (json!({"environment": 1, "backend": "unshare", "command": ["x"], "timeout": -5}), "timeout"),
            (
                json!({"environment": 1, "backend": "unshare", "command": ["x"],
                    "constraints": [{"key": "k", "op": "regex", "value": "("}]}),
                "regex",
            ),
            (
                json!({"environment": 1, "backend": "unshare", "command": ["x"],
                    "constraints": [{"key": "k", "op": "~", "value": 1}]}),
                "constraints",
            ),
        ];
        for (d, word) in bad {
            let err = validate(TaskType::Worker, "command", &data(d.clone())).expect_err(&d.to_string());
            assert!(err.message.contains(word), "{d}: {}", err.message);
        }
        assert_eq!(validate(TaskType::Worker, "frobnicate", &Map::new()).expect_err("unknown").code, "unknown-task");
        assert!(validate(TaskType::Internal, "synchronization_point", &data(json!({"x": 1}))).is_err());
    }

    #[test]
    fn finds_referenced_artifacts() {
        let d = data(json!({"environment": 3, "input": {"source_artifact": 4, "binary_artifacts": [5, 6]},
                            "timeout": 99, "unsigned": 8}));
        let mut ids = referenced_artifacts(&d);
        ids.sort();
        assert_eq!(ids, vec![3, 4, 5, 6, 8]);
    }
}
