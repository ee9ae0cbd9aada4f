//! Validation of the task types the coordinator runs itself (workflow,
//! server, wait) and of `workflow_data`, whose known keys steer the DAG.

use super::validate::Fields;
use super::{TaskError, Validated};
use chrono::{DateTime, Utc};
use kiln_shared::TaskType;
use serde_json::{Map, Value};

fn coordinator_work(environment: Option<i64>) -> Validated {
    Validated { requirements: None, environment }
}

/// A workflow's `task_data` is its orchestrator's to judge.
pub(super) fn workflow(name: &str, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    let orchestrator = crate::workflows::orchestrator(name)
        .ok_or_else(|| TaskError::new("unknown-task", format!("there is no workflow named {name:?}")))?;
    orchestrator.validate(data).map_err(|e| TaskError::new("invalid-task-data", e.to_string()))?;
    Ok(coordinator_work(data.get("environment").and_then(Value::as_i64)))
}

pub(super) fn server(name: &str, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    crate::server_tasks::validate(name, data).map_err(|message| TaskError::new("invalid-task-data", message))?;
    Ok(coordinator_work(None))
}

pub(super) fn wait(name: &str, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    match name {
        "delay" => {
            let f = Fields::new(data, &["delay_until"])?;
            parse_time(f.required_string("delay_until")?)?;
        }
        _ => {
            Fields::new(data, &[])?;
        }
    }
    Ok(coordinator_work(None))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, TaskError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        TaskError::new("invalid-task-data", format!("task_data.delay_until must be an RFC 3339 time ({e}): {text:?}"))
    })
}

/// When a wait task completes by itself (`delay`), from valid task data.
pub fn wake_at(task_type: TaskType, name: &str, data: &Map<String, Value>) -> Option<DateTime<Utc>> {
    (task_type == TaskType::Wait && name == "delay")
        .then(|| data.get("delay_until").and_then(Value::as_str).and_then(|t| parse_time(t).ok()))
        .flatten()
}

fn bad(key: &str, what: &str) -> TaskError {
    TaskError::new("invalid-workflow-data", format!("workflow_data.{key} must be {what}"))
}

/// Check the keys of `workflow_data` Kiln acts on and fill in what a task
/// type implies (`needs_input` of wait tasks). Other keys are kept as given.
pub fn workflow_data(
    task_type: TaskType,
    name: &str,
    mut data: Map<String, Value>,
) -> Result<Map<String, Value>, TaskError> {
    for key in ["allow_failure", "needs_input"] {
        if data.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(bad(key, "true or false"));
        }
    }
    for key in ["step", "display_name"] {
        if data.get(key).is_some_and(|v| !v.is_string()) {
            return Err(bad(key, "a string"));
        }
    }
    if let Some(delays) = data.get("retry_delays") {
        let ok = delays.as_array().is_some_and(|items| items.iter().all(|d| d.as_u64().is_some()));
        if !ok {
            return Err(bad("retry_delays", "a list of delays in seconds (non-negative integers)"));
        }
    }
    match (task_type, name) {
        (TaskType::Internal, "workflow") if !data.get("step").is_some_and(Value::is_string) => {
            return Err(bad("step", "given: a workflow callback names the step it runs"));
        }
        (TaskType::Wait, "external_approval") => {
            if data.get("needs_input") == Some(&Value::Bool(false)) {
                return Err(bad("needs_input", "true for external_approval: a person must act"));
            }
            data.insert("needs_input".into(), Value::Bool(true));
        }
        (TaskType::Wait, _) => {
            data.entry("needs_input").or_insert(Value::Bool(false));
        }
        _ => {}
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn delays_need_a_valid_time() {
        assert!(wait("delay", &map(json!({"delay_until": "2030-01-01T00:00:00Z"}))).is_ok());
        let err = wait("delay", &map(json!({"delay_until": "tomorrow"}))).expect_err("bad time");
        assert!(err.message.contains("delay_until"), "{}", err.message);
        assert!(wait("delay", &Map::new()).is_err());
        assert!(wait("external_approval", &map(json!({"x": 1}))).is_err());
        let at = wake_at(TaskType::Wait, "delay", &map(json!({"delay_until": "2030-01-01T01:00:00+01:00"})));
        assert_eq!(at.map(|t| t.to_rfc3339()), Some("2030-01-01T00:00:00+00:00".to_owned()));
    }

    #[test]
    fn workflow_data_keys_are_checked_and_filled_in() {
        let wd = workflow_data(TaskType::Wait, "external_approval", Map::new()).expect("valid");
        assert_eq!(wd.get("needs_input"), Some(&json!(true)));
        let wd = workflow_data(TaskType::Wait, "delay", Map::new()).expect("valid");
        assert_eq!(wd.get("needs_input"), Some(&json!(false)));
        for (t, n, wd, key) in [
            (TaskType::Internal, "workflow", json!({}), "step"),
            (TaskType::Worker, "noop", json!({"allow_failure": "yes"}), "allow_failure"),
            (TaskType::Worker, "noop", json!({"retry_delays": [10, -1]}), "retry_delays"),
            (TaskType::Wait, "external_approval", json!({"needs_input": false}), "needs_input"),
        ] {
            let err = workflow_data(t, n, map(wd)).expect_err(key);
            assert!(err.message.contains(key), "{}", err.message);
        }
        let kept = workflow_data(TaskType::Worker, "noop", map(json!({"retry_delays": [0, 5], "colour": "red"})));
        assert_eq!(kept.expect("valid").get("colour"), Some(&json!("red")));
    }
}
