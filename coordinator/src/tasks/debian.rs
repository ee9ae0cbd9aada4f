//! `task_data` of the Debian worker tasks (DESIGN §2): checked at creation
//! so that a bad request is a 400 naming the key, never a task an agent
//! fails on. Agents advertise `<task>:available` from the tools they have;
//! the matcher assigns only where it is not false.

use super::validate::Fields;
use super::{worker_requirements, TaskError, Validated};
use serde_json::{Map, Value};

/// Debian tools drive Debian's own unshare sandbox (DESIGN §5).
const TOOL_BACKENDS: &[&str] = &["auto", "unshare"];
const VARIANTS: &[&str] =
    &["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"];
pub const LINTIAN_SEVERITIES: &[&str] = &["error", "warning", "info", "pedantic", "experimental", "overridden", "none"];

pub const NAMES: &[&str] = &["mmdebstrap", "sbuild", "lintian", "autopkgtest", "extract_test_restrictions"];

fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::new("invalid-task-data", message)
}

/// Letters, digits and `.+-~_` (package names, suites, architectures).
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || ".+-~_".contains(c))
}

fn word<'a>(f: &Fields<'a>, key: &str, path: &str) -> Result<&'a str, TaskError> {
    let value = f.required_string(key)?;
    is_word(value).then_some(value).ok_or_else(|| invalid(format!("task_data.{path}: {value:?} is not a valid name")))
}

fn object<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, TaskError> {
    data.get(key).and_then(Value::as_object).ok_or_else(|| invalid(format!("task_data.{key} must be an object")))
}

fn ids(f: &Fields<'_>, key: &str, path: &str) -> Result<Vec<i64>, TaskError> {
    match f.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_i64().filter(|id| *id > 0))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| invalid(format!("task_data.{path} must be a list of artifact ids"))),
        Some(_) => Err(invalid(format!("task_data.{path} must be a list of artifact ids"))),
    }
}

fn backend(f: &Fields<'_>, task: &str) -> Result<(), TaskError> {
    match f.string("backend")? {
        None => Ok(()),
        Some(b) if TOOL_BACKENDS.contains(&b) => Ok(()),
        Some(b) => Err(invalid(format!(
            "task_data.backend {b:?}: {task} runs in Debian's own unshare sandbox on the agent; use \"unshare\" or \"auto\""
        ))),
    }
}

fn timeout(f: &Fields<'_>) -> Result<(), TaskError> {
    if f.positive_int("timeout")? == Some(0) {
        return Err(invalid("task_data.timeout must be at least 1 second"));
    }
    Ok(())
}

pub fn validate(name: &str, version: u32, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    let common = ["host_architecture", "constraints", "timeout"];
    let keys = |own: &[&'static str]| -> Vec<&'static str> { own.iter().chain(&common).copied().collect() };
    match name {
        "mmdebstrap" => {
            let f = Fields::new(data, &keys(&["bootstrap_options", "bootstrap_repositories"]))?;
            timeout(&f)?;
            let options = object(data, "bootstrap_options")?;
            let o = Fields::new(options, &["architecture", "variant", "extra_packages"])?;
            let architecture = word(&o, "architecture", "bootstrap_options.architecture")?;
            let variant = o.required_string("variant")?;
            if !VARIANTS.contains(&variant) {
                return Err(invalid(format!(
                    "task_data.bootstrap_options.variant {variant:?} is not one of {}",
                    VARIANTS.join(", ")
                )));
            }
            for p in o.string_list("extra_packages")?.unwrap_or_default() {
                if !is_word(&p) {
                    return Err(invalid(format!(
                        "task_data.bootstrap_options.extra_packages: {p:?} is not a package name"
                    )));
                }
            }
            let repos = data
                .get("bootstrap_repositories")
                .and_then(Value::as_array)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| invalid("task_data.bootstrap_repositories must be a non-empty list"))?;
            for (i, repo) in repos.iter().enumerate() {
                let path = format!("bootstrap_repositories[{i}]");
                let repo = repo.as_object().ok_or_else(|| invalid(format!("task_data.{path} must be an object")))?;
                let r = Fields::new(repo, &["mirror", "suite", "components"])?;
                let mirror = r.required_string("mirror")?;
                let url_ok = (mirror.starts_with("http://") || mirror.starts_with("https://"))
                    && !mirror.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\'' || c == '"');
                if !url_ok {
                    return Err(invalid(format!("task_data.{path}.mirror {mirror:?} must be an http(s) URL")));
                }
                word(&r, "suite", &format!("{path}.suite"))?;
                let components = r.string_list("components")?.unwrap_or_default();
                if components.is_empty() || components.iter().any(|c| !is_word(c)) {
                    return Err(invalid(format!("task_data.{path}.components must list component names")));
                }
            }
            let mut req = worker_requirements(name, version, &f)?;
            req.architecture = Some(architecture.to_owned());
            Ok(Validated { requirements: Some(req.normalized()), environment: None })
        }
        "sbuild" => {
            let f = Fields::new(data, &keys(&["input", "environment", "build_components", "backend"]))?;
            timeout(&f)?;
            let input = object(data, "input")?;
            Fields::new(input, &["source_artifact"])?.required_id("source_artifact")?;
            let environment = f.required_id("environment")?;
            word(&f, "host_architecture", "host_architecture")?;
            let components = f.string_list("build_components")?.unwrap_or_else(|| vec!["any".into()]);
            if components.is_empty() || components.iter().any(|c| c != "any" && c != "all") {
                return Err(invalid("task_data.build_components must list \"any\" and/or \"all\""));
            }
            backend(&f, name)?;
            let req = worker_requirements(name, version, &f)?;
            Ok(Validated { requirements: Some(req.normalized()), environment: Some(environment) })
        }
        "lintian" => {
            let f = Fields::new(data, &keys(&["input", "environment", "fail_on_severity"]))?;
            timeout(&f)?;
            let input = object(data, "input")?;
            let i = Fields::new(input, &["source_artifact", "binary_artifacts"])?;
            let source = i.get("source_artifact").map(|_| i.required_id("source_artifact")).transpose()?;
            let binaries = ids(&i, "binary_artifacts", "input.binary_artifacts")?;
            if source.is_none() && binaries.is_empty() {
                return Err(invalid("task_data.input needs source_artifact or binary_artifacts"));
            }
            let environment = f.required_id("environment")?;
            if let Some(s) = f.string("fail_on_severity")? {
                if !LINTIAN_SEVERITIES.contains(&s) {
                    return Err(invalid(format!(
                        "task_data.fail_on_severity {s:?} is not one of {}",
                        LINTIAN_SEVERITIES.join(", ")
                    )));
                }
            }
            let req = worker_requirements(name, version, &f)?;
            Ok(Validated { requirements: Some(req.normalized()), environment: Some(environment) })
        }
        "autopkgtest" => {
            let f = Fields::new(data, &keys(&["input", "environment", "backend", "fail_on_no_tests"]))?;
            timeout(&f)?;
            let input = object(data, "input")?;
            let i = Fields::new(input, &["source_artifact", "binary_artifacts"])?;
            i.required_id("source_artifact")?;
            ids(&i, "binary_artifacts", "input.binary_artifacts")?;
            let environment = f.required_id("environment")?;
            backend(&f, name)?;
            f.boolean("fail_on_no_tests")?;
            let req = worker_requirements(name, version, &f)?;
            Ok(Validated { requirements: Some(req.normalized()), environment: Some(environment) })
        }
        "extract_test_restrictions" => {
            let f = Fields::new(data, &keys(&["input", "environment"]))?;
            timeout(&f)?;
            let input = object(data, "input")?;
            Fields::new(input, &["source_artifact"])?.required_id("source_artifact")?;
            let environment = f.get("environment").map(|_| f.required_id("environment")).transpose()?;
            let req = worker_requirements(name, version, &f)?;
            Ok(Validated { requirements: Some(req.normalized()), environment })
        }
        other => Err(TaskError::new("unknown-task", format!("there is no worker task named {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn accepts_the_designed_task_data() {
        let good = [
            (
                "mmdebstrap",
                json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd", "extra_packages": ["lintian"]},
                       "bootstrap_repositories": [{"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "components": ["main"]}]}),
            ),
            (
                "sbuild",
                json!({"input": {"source_artifact": 1}, "environment": 2, "host_architecture": "amd64",
                       "build_components": ["any", "all"], "backend": "unshare"}),
            ),
            (
                "lintian",
                json!({"input": {"binary_artifacts": [3, 4]}, "environment": 2, "fail_on_severity": "warning"}),
            ),
            (
                "autopkgtest",
                json!({"input": {"source_artifact": 1, "binary_artifacts": [3]}, "environment": 2, "backend": "auto"}),
            ),
            ("extract_test_restrictions", json!({"input": {"source_artifact": 1}})),
        ];
        for (name, d) in good {
            let v = validate(name, 1, &data(d)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v.requirements.expect("worker task").task_name, name);
        }
        let mm = validate(
            "mmdebstrap",
            1,
            &data(json!({"bootstrap_options": {"architecture": "arm64", "variant": "minbase"},
                "bootstrap_repositories": [{"mirror": "https://m/debian", "suite": "trixie", "components": ["main"]}]})),
        )
        .expect("valid");
        assert_eq!(mm.requirements.and_then(|r| r.architecture).as_deref(), Some("arm64"));
    }

    #[test]
    fn refuses_bad_task_data_naming_the_key() {
        let bad = [
            (
                "mmdebstrap",
                json!({"bootstrap_options": {"architecture": "amd64", "variant": "fat"},
                "bootstrap_repositories": [{"mirror": "http://m", "suite": "s", "components": ["main"]}]}),
                "variant",
            ),
            (
                "mmdebstrap",
                json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd"},
                "bootstrap_repositories": [{"mirror": "file:///etc", "suite": "s", "components": ["main"]}]}),
                "mirror",
            ),
            (
                "mmdebstrap",
                json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd"},
                "bootstrap_repositories": []}),
                "bootstrap_repositories",
            ),
            (
                "mmdebstrap",
                json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd", "extra_packages": ["a b"]},
                "bootstrap_repositories": [{"mirror": "http://m", "suite": "s", "components": ["main"]}]}),
                "extra_packages",
            ),
            ("sbuild", json!({"input": {}, "environment": 2, "host_architecture": "amd64"}), "source_artifact"),
            (
                "sbuild",
                json!({"input": {"source_artifact": 1}, "environment": 2, "host_architecture": "amd64",
                "backend": "qemu"}),
                "unshare",
            ),
            (
                "sbuild",
                json!({"input": {"source_artifact": 1}, "environment": 2, "host_architecture": "amd64",
                "build_components": ["source"]}),
                "build_components",
            ),
            ("sbuild", json!({"input": {"source_artifact": 1}, "host_architecture": "amd64"}), "environment"),
            ("lintian", json!({"input": {}, "environment": 2}), "input"),
            (
                "lintian",
                json!({"input": {"source_artifact": 1}, "environment": 2, "fail_on_severity": "fatal"}),
                "fail_on_severity",
            ),
            (
                "autopkgtest",
                json!({"input": {"source_artifact": 1, "binary_artifacts": ["x"]}, "environment": 2}),
                "binary_artifacts",
            ),
            ("extract_test_restrictions", json!({"input": {"source_artifact": 1}, "colour": 1}), "colour"),
        ];
        for (name, d, word) in bad {
            let err = validate(name, 1, &data(d.clone())).expect_err(&d.to_string());
            assert_eq!(err.code, "invalid-task-data");
            assert!(err.message.contains(word), "{name} {d}: {}", err.message);
        }
    }
}
