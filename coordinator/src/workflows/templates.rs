//! Workflow templates (DESIGN §9) as pure functions: merging a template's
//! `task_data` with a submission's, and the `allowed` value lists.
//!
//! Merging follows Debusine: only top-level keys, and the template's value
//! wins where both have a key (a list or mapping in the user data is then
//! ignored). With `merge: deep`, mappings merge recursively; template
//! leaves still win.
//!
//! An `allowed` key is a path: `backend`, or `targets.backend`, where each
//! segment enters a mapping and lists are entered element by element. Every
//! value found there must be one of the allowed values; `auto` passes at
//! submission and is narrowed to the allowed values when it is resolved.

use super::WorkflowError;
use kiln_shared::workflow::{MergeMode, WorkflowTemplateSpec};
use serde_json::{Map, Value};

/// The task data a workflow starts with.
pub fn merge(template: &Map<String, Value>, user: &Map<String, Value>, mode: MergeMode) -> Map<String, Value> {
    let mut merged = user.clone();
    for (key, theirs) in template {
        let value = match (mode, merged.get(key), theirs) {
            (MergeMode::Deep, Some(Value::Object(mine)), Value::Object(theirs)) => {
                Value::Object(merge(theirs, mine, MergeMode::Deep))
            }
            _ => theirs.clone(),
        };
        merged.insert(key.clone(), value);
    }
    merged
}

/// The values found at `path` in `data`, lists entered element by element.
fn values_at<'a>(data: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match (data, path.split_first()) {
        (Value::Array(items), _) => items.iter().for_each(|item| values_at(item, path, out)),
        (_, None) => out.push(data),
        (Value::Object(map), Some((first, rest))) => {
            if let Some(inner) = map.get(*first) {
                values_at(inner, rest, out);
            }
        }
        _ => {}
    }
}

fn show(values: &[Value]) -> String {
    values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
}

/// Check `data` against `allowed`; the error names the key.
pub fn check_allowed(data: &Map<String, Value>, allowed: &Map<String, Value>) -> Result<(), WorkflowError> {
    let root = Value::Object(data.clone());
    for (key, values) in allowed {
        let values = values.as_array().map(Vec::as_slice).unwrap_or_default();
        let path: Vec<&str> = key.split('.').collect();
        let mut found = Vec::new();
        values_at(&root, &path, &mut found);
        for value in found {
            if value.as_str() == Some("auto") || values.contains(value) {
                continue;
            }
            let shown = value.as_str().map_or_else(|| value.to_string(), |s| format!("{s:?}"));
            return Err(WorkflowError::NotAllowed {
                key: key.clone(),
                message: format!("task_data.{key}: {shown} is not allowed by the template (allowed: {})", show(values)),
            });
        }
    }
    Ok(())
}

/// Check a template before storing it.
pub fn validate_template(name: &str, spec: &WorkflowTemplateSpec) -> Result<(), WorkflowError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !name_ok {
        return Err(WorkflowError::invalid(
            "name",
            format!("template name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
        ));
    }
    if super::orchestrator(&spec.task_name).is_none() {
        return Err(WorkflowError::invalid(
            "task_name",
            format!("there is no workflow named {:?} (known: {})", spec.task_name, super::NAMES.join(", ")),
        ));
    }
    for (key, values) in &spec.allowed {
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(WorkflowError::invalid("allowed", format!("allowed key {key:?} is not a key path")));
        }
        let listed = matches!(values.as_array(), Some(v) if !v.is_empty());
        if !listed {
            return Err(WorkflowError::invalid(
                format!("allowed.{key}"),
                format!("allowed.{key} must be a non-empty list of values"),
            ));
        }
    }
    // The template's own values must keep to its own lists.
    check_allowed(&spec.task_data, &spec.allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn top_level_merge_lets_the_template_win_whole_keys() {
        let template = map(json!({"codename": "bookworm", "options": {"a": 1}, "archs": ["amd64"]}));
        let user = map(json!({"codename": "sid", "options": {"b": 2}, "archs": ["arm64"], "extra": true}));
        let merged = merge(&template, &user, MergeMode::Top);
        assert_eq!(
            Value::Object(merged),
            json!({"codename": "bookworm", "options": {"a": 1}, "archs": ["amd64"], "extra": true})
        );
    }

    #[test]
    fn deep_merge_merges_mappings_and_template_leaves_still_win() {
        let template = map(json!({"options": {"a": 1, "inner": {"x": "t"}}, "archs": ["amd64"]}));
        let user = map(json!({"options": {"a": 9, "b": 2, "inner": {"x": "u", "y": "u"}}, "archs": ["arm64"]}));
        let merged = merge(&template, &user, MergeMode::Deep);
        assert_eq!(
            Value::Object(merged),
            json!({"options": {"a": 1, "b": 2, "inner": {"x": "t", "y": "u"}}, "archs": ["amd64"]})
        );
    }

    #[test]
    fn allowed_lists_name_the_key_and_let_auto_through() {
        let allowed = map(json!({"targets.backend": ["unshare", "incus-lxc"], "codename": ["bookworm"]}));
        let ok = map(json!({"targets": [{"backend": "unshare"}, {"backend": "auto"}], "codename": "bookworm"}));
        check_allowed(&ok, &allowed).expect("allowed");
        let bad = map(json!({"targets": [{"backend": "unshare"}, {"backend": "qemu"}]}));
        let err = check_allowed(&bad, &allowed).expect_err("qemu");
        assert!(matches!(&err, WorkflowError::NotAllowed { key, .. } if key == "targets.backend"), "{err}");
        assert!(err.to_string().contains("qemu") && err.to_string().contains("incus-lxc"), "{err}");
        let list = check_allowed(&map(json!({"codename": ["bookworm", "trixie"]})), &allowed).expect_err("list");
        assert!(list.to_string().contains("trixie"), "{list}");
        check_allowed(&Map::new(), &allowed).expect("absent keys are not checked");
    }

    #[test]
    fn templates_are_checked_before_they_are_stored() {
        let spec = |v: Value| serde_json::from_value::<WorkflowTemplateSpec>(v).expect("spec");
        validate_template("ok", &spec(json!({"task_name": "matrix"}))).expect("valid");
        let cases = [
            ("bad name", spec(json!({"task_name": "matrix"})), "name"),
            ("t", spec(json!({"task_name": "nope"})), "nope"),
            ("t", spec(json!({"task_name": "matrix", "allowed": {"backend": []}})), "allowed.backend"),
            (
                "t",
                spec(
                    json!({"task_name": "noop", "task_data": {"backend": "qemu"}, "allowed": {"backend": ["unshare"]}}),
                ),
                "qemu",
            ),
        ];
        for (name, s, word) in cases {
            let err = validate_template(name, &s).expect_err(word);
            assert!(err.to_string().contains(word), "{err}");
        }
    }
}
