//! Turning `POST /api/1/workflows {template, task_data}` into the root work
//! request to create: merge, check the allowed lists, let the orchestrator
//! validate, snapshot what later resolution needs into `workflow_data`.

use super::templates::{check_allowed, merge};
use super::WorkflowError;
use kiln_shared::workflow::{NewWorkflow, WorkflowTemplate};
use serde_json::{Map, Value};

/// The root work request a submission becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub task_name: String,
    pub task_data: Map<String, Value>,
    pub workflow_data: Map<String, Value>,
    pub priority_base: i64,
    pub priority_adjustment: i64,
}

/// Everything short of storing it; errors name the offending key.
pub fn prepare(template: &WorkflowTemplate, body: &NewWorkflow) -> Result<Submission, WorkflowError> {
    let task_data = merge(&template.task_data, &body.task_data, template.merge);
    check_allowed(&task_data, &template.allowed)?;
    let orchestrator = super::orchestrator(&template.task_name).ok_or_else(|| {
        WorkflowError::invalid("template", format!("template {:?} names no known workflow", template.name))
    })?;
    orchestrator.validate(&task_data)?;
    let mut workflow_data = Map::new();
    workflow_data.insert("workflow_template".into(), Value::String(template.name.clone()));
    if !template.allowed.is_empty() {
        workflow_data.insert("allowed".into(), Value::Object(template.allowed.clone()));
    }
    Ok(Submission {
        task_name: template.task_name.clone(),
        task_data,
        workflow_data,
        priority_base: template.priority,
        priority_adjustment: body.priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_shared::workflow::MergeMode;
    use serde_json::json;

    fn template() -> WorkflowTemplate {
        WorkflowTemplate {
            name: "ci".into(),
            task_name: "matrix".into(),
            task_data: json!({"command": ["make", "check"]}).as_object().cloned().unwrap_or_default(),
            allowed: json!({"targets.backend": ["unshare"]}).as_object().cloned().unwrap_or_default(),
            merge: MergeMode::Top,
            priority: 5,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn body(data: Value) -> NewWorkflow {
        NewWorkflow { template: "ci".into(), task_data: data.as_object().cloned().unwrap_or_default(), priority: -1 }
    }

    #[test]
    fn merges_checks_and_snapshots_the_allowed_lists() {
        let s = prepare(
            &template(),
            &body(json!({"environment": 3, "command": ["rm", "-rf"], "targets": [{"architecture": "amd64", "backend": "auto"}]})),
        )
        .expect("valid");
        assert_eq!(s.task_data.get("command"), Some(&json!(["make", "check"])), "the template wins");
        assert_eq!(s.workflow_data.get("allowed"), Some(&json!({"targets.backend": ["unshare"]})));
        assert_eq!((s.priority_base, s.priority_adjustment), (5, -1));
    }

    #[test]
    fn refusals_name_the_key() {
        let err = prepare(
            &template(),
            &body(json!({"environment": 3, "targets": [{"architecture": "amd64", "backend": "qemu"}]})),
        )
        .expect_err("qemu is not allowed");
        assert!(matches!(&err, WorkflowError::NotAllowed { key, .. } if key == "targets.backend"), "{err}");
        let err = prepare(&template(), &body(json!({"targets": []}))).expect_err("no targets");
        assert!(err.to_string().contains("targets"), "{err}");
    }
}
