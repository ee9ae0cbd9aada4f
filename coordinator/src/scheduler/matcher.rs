//! Does an agent satisfy a requirement class? A pure function of the class
//! and the agent's merged metadata, so it is unit-tested without a server.

use super::requirements::{Constraint, Op, Requirements};
use kiln_shared::worker::keys;
use kiln_shared::WorkerRole;
use regex::Regex;
use serde_json::{Map, Value};

/// A requirement class with its regexes compiled and its metadata keys
/// built once, so that matching allocates nothing.
#[derive(Debug)]
pub struct CompiledRequirements {
    pub req: Requirements,
    regexes: Vec<Option<Regex>>,
    /// `<task_name>:version`.
    version_key: String,
    /// `executor:<backend>:available` for each acceptable backend.
    backend_keys: Vec<String>,
    /// `<task_name>:available`: an agent that says false lacks the task's tools.
    available_key: String,
}

impl CompiledRequirements {
    /// Fails only on an invalid regex, which creation already refused.
    pub fn compile(req: Requirements) -> Result<Self, regex::Error> {
        let regexes = req
            .constraints
            .iter()
            .map(|c| match (c.op, &c.value) {
                (Op::Regex, Value::String(pattern)) => Regex::new(pattern).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let version_key = keys::task_version(&req.task_name);
        let backend_keys = req.backends.iter().map(|b| keys::backend_available(b)).collect();
        let available_key = format!("{}:available", req.task_name);
        Ok(CompiledRequirements { req, regexes, version_key, backend_keys, available_key })
    }
}

/// The agent side of a match.
#[derive(Debug)]
pub struct AgentView<'a> {
    pub role: WorkerRole,
    /// Static metadata merged over dynamic metadata.
    pub metadata: &'a Map<String, Value>,
}

/// Does `agent` satisfy every requirement of the class?
pub fn matches(class: &CompiledRequirements, agent: &AgentView<'_>) -> bool {
    let req = &class.req;
    let md = agent.metadata;
    agent.role == req.role
        && md.get(&class.version_key).and_then(as_u64) == Some(u64::from(req.task_version))
        && req.architecture.as_ref().is_none_or(|arch| runs_architecture(md, arch))
        && md.get(&class.available_key) != Some(&Value::Bool(false))
        && task_allowed(&req.task_name, md)
        && (class.backend_keys.is_empty() || class.backend_keys.iter().any(|k| md.get(k) == Some(&Value::Bool(true))))
        && req.min_memory.is_none_or(|m| md.get(keys::TOTAL_MEMORY).and_then(as_u64) >= Some(m))
        && req.min_disk.is_none_or(|m| md.get(keys::AVAILABLE_DISK).and_then(as_u64) >= Some(m))
        && req.executables.iter().all(|e| list_contains(md.get(keys::EXECUTABLES), e))
        && req.constraints.iter().zip(&class.regexes).all(|(c, re)| constraint_holds(c, re.as_ref(), md))
}

/// `tasks_allowlist` wins over `tasks_denylist` when both are set.
fn task_allowed(task: &str, md: &Map<String, Value>) -> bool {
    if let Some(allow) = md.get(keys::TASKS_ALLOWLIST).filter(|v| !v.is_null()) {
        return list_contains(Some(allow), task);
    }
    !list_contains(md.get(keys::TASKS_DENYLIST), task)
}

fn runs_architecture(md: &Map<String, Value>, arch: &str) -> bool {
    list_contains(md.get(keys::ARCHITECTURES), arch)
        || md.get(keys::HOST_ARCHITECTURE).and_then(Value::as_str) == Some(arch)
}

fn list_contains(list: Option<&Value>, item: &str) -> bool {
    match list {
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(item)),
        _ => false,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn constraint_holds(c: &Constraint, re: Option<&Regex>, md: &Map<String, Value>) -> bool {
    let actual = md.get(&c.key);
    match c.op {
        Op::Eq => actual == Some(&c.value),
        Op::Ne => actual != Some(&c.value),
        Op::Ge | Op::Le => match (actual.and_then(Value::as_f64), c.value.as_f64()) {
            (Some(a), Some(v)) => {
                if c.op == Op::Ge {
                    a >= v
                } else {
                    a <= v
                }
            }
            _ => false,
        },
        Op::Contains => match (actual, &c.value) {
            (Some(Value::Array(items)), v) => items.contains(v),
            (Some(Value::String(s)), Value::String(v)) => s.contains(v.as_str()),
            _ => false,
        },
        Op::Regex => match (actual, re) {
            (Some(Value::String(s)), Some(re)) => re.is_match(s),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent_md() -> Map<String, Value> {
        json!({
            "system:host_architecture": "amd64",
            "system:architectures": ["amd64", "i386"],
            "system:total_physical_memory": 8_000_000_000u64,
            "system:available_disk_space": 50_000_000_000u64,
            "system:executables": ["sbuild", "lintian"],
            "executor:unshare:available": true,
            "executor:qemu:available": false,
            "command:version": 1,
            "noop:version": 1,
            "kernel": "6.1.0-13-amd64",
        })
        .as_object()
        .cloned()
        .expect("object")
    }

    fn check(req: Requirements, md: &Map<String, Value>) -> bool {
        let class = CompiledRequirements::compile(req).expect("compile");
        matches(&class, &AgentView { role: WorkerRole::Worker, metadata: md })
    }

    fn command() -> Requirements {
        Requirements::new(WorkerRole::Worker, "command", 1)
    }

    #[test]
    fn plain_task_matches_an_agent_that_runs_its_version() {
        let md = agent_md();
        assert!(check(command(), &md));
        assert!(!check(Requirements::new(WorkerRole::Worker, "command", 2), &md), "other version");
        assert!(!check(Requirements::new(WorkerRole::Worker, "sbuild", 1), &md), "no version advertised");
        let class = CompiledRequirements::compile(command()).expect("compile");
        assert!(!matches(&class, &AgentView { role: WorkerRole::Signing, metadata: &md }), "role");
    }

    #[test]
    fn a_task_whose_tools_are_missing_is_not_assigned() {
        let mut md = agent_md();
        md.insert("sbuild:version".into(), json!(1));
        let sbuild = || Requirements::new(WorkerRole::Worker, "sbuild", 1);
        assert!(check(sbuild(), &md), "no availability key: the version decides");
        md.insert("sbuild:available".into(), json!(true));
        assert!(check(sbuild(), &md));
        md.insert("sbuild:available".into(), json!(false));
        assert!(!check(sbuild(), &md), "sbuild:available false");
        assert!(check(command(), &md), "other tasks are unaffected");
    }

    #[test]
    fn architecture_backend_and_resources() {
        let md = agent_md();
        let mut r = command();
        r.architecture = Some("i386".into());
        assert!(check(r.clone(), &md));
        r.architecture = Some("arm64".into());
        assert!(!check(r, &md));

        let mut r = command();
        r.backends = vec!["qemu".into(), "unshare".into()];
        assert!(check(r.clone(), &md), "any acceptable backend available");
        r.backends = vec!["qemu".into(), "incus-lxc".into()];
        assert!(!check(r, &md), "qemu probed unavailable, incus-lxc unknown");

        let mut r = command();
        r.min_memory = Some(8_000_000_000);
        assert!(check(r.clone(), &md));
        r.min_memory = Some(8_000_000_001);
        assert!(!check(r, &md));
        let mut r = command();
        r.min_disk = Some(60_000_000_000);
        assert!(!check(r, &md));

        let mut r = command();
        r.executables = vec!["lintian".into(), "sbuild".into()];
        assert!(check(r.clone(), &md));
        r.executables.push("autopkgtest".into());
        assert!(!check(r, &md));
    }

    #[test]
    fn allowlist_wins_over_denylist() {
        let mut md = agent_md();
        md.insert("tasks_denylist".into(), json!(["command"]));
        assert!(!check(command(), &md));
        md.insert("tasks_allowlist".into(), json!(["command"]));
        assert!(check(command(), &md), "allowlist wins");
        md.insert("tasks_allowlist".into(), json!(["noop"]));
        assert!(!check(command(), &md), "not on the allowlist");
    }

    #[test]
    fn explicit_constraints() {
        let md = agent_md();
        let with = |key: &str, op: Op, value: Value| {
            let mut r = command();
            r.constraints = vec![Constraint { key: key.into(), op, value }];
            check(r, &md)
        };
        assert!(with("system:host_architecture", Op::Eq, json!("amd64")));
        assert!(!with("system:host_architecture", Op::Ne, json!("amd64")));
        assert!(with("absent", Op::Ne, json!("x")));
        assert!(with("system:total_physical_memory", Op::Ge, json!(1024)));
        assert!(!with("system:total_physical_memory", Op::Le, json!(1024)));
        assert!(!with("kernel", Op::Ge, json!(1)), "strings do not compare as numbers");
        assert!(with("system:executables", Op::Contains, json!("sbuild")));
        assert!(with("kernel", Op::Contains, json!("amd64")));
        assert!(with("kernel", Op::Regex, json!("^6\\.1\\.")));
        assert!(!with("kernel", Op::Regex, json!("^5\\.")));
        assert!(!with("absent", Op::Eq, json!(null)));
    }

    #[test]
    fn equal_needs_share_a_class() {
        let mut a = command();
        a.backends = vec!["qemu".into(), "unshare".into(), "qemu".into()];
        let mut b = command();
        b.backends = vec!["unshare".into(), "qemu".into()];
        assert_eq!(a.normalized().class_key(), b.normalized().class_key());
    }
}
