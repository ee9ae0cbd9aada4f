//! The host fingerprint: the dynamic metadata an agent publishes (DESIGN §4)
//! so the scheduler can match work to it. Every probe reads under a root
//! (`/proc`, `/sys`, `/dev`, a `PATH`) that tests point at fixtures; the
//! daemon calls [`probe`] at start-up and now and then, and re-publishes
//! when [`changed_keys`] is not empty.

mod backends;
pub mod limits;
mod run;
pub(crate) use run::find_on_path;
#[cfg(test)]
pub(crate) use run::tests as tests_support;
mod system;

pub use backends::{availability_changed, backend_reason_key, ProbeDepth, BACKEND_PROBE_TIMEOUT};

use crate::config::{AgentConfig, Role};
use kiln_shared::worker::keys;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// Version of each task this agent runs, advertised as `<task>:version`.
pub const WORKER_TASKS: &[(&str, u32)] = &[("noop", 1), ("command", 1)];

/// Where to look. Production uses [`ProbeInput::for_host`].
#[derive(Debug, Clone)]
pub struct ProbeInput<'a> {
    pub config: &'a AgentConfig,
    /// `/proc`: `self/mountinfo`, `self/cgroup`, `meminfo`, `cpuinfo`.
    pub proc_root: PathBuf,
    /// `/sys`: cgroup mounts and `devices/system/cpu/online`.
    pub sys_root: PathBuf,
    /// `/dev`: `loop-control`.
    pub dev_root: PathBuf,
    /// Its filesystem's free space is `system:available_disk_space`.
    pub data_dir: PathBuf,
    /// `PATH` to look executables (and `dpkg`, `arch-test`, `mkfs.ext4`) up on.
    pub path_var: OsString,
    /// This agent's binary, run as `<agent_exe> probe-backend <backend>`.
    pub agent_exe: PathBuf,
    /// Trial tasks in the backends, or the quick re-check.
    pub backend_depth: ProbeDepth,
}

impl<'a> ProbeInput<'a> {
    /// The real host: `/proc`, `/sys`, `/dev`, the configured data directory
    /// and this process's `PATH`.
    pub fn for_host(config: &'a AgentConfig, agent_exe: PathBuf) -> ProbeInput<'a> {
        ProbeInput {
            config,
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            data_dir: config.data_dir.clone(),
            path_var: std::env::var_os("PATH").unwrap_or_default(),
            agent_exe,
            backend_depth: ProbeDepth::Full,
        }
    }
}

/// Probes the host. Blocking (it runs `dpkg`, `arch-test`, the backend
/// probes and creates probe cgroups): call it from `spawn_blocking`.
/// Values that cannot be found out are left out rather than guessed.
pub fn probe(input: &ProbeInput) -> Map<String, Value> {
    let mut map = Map::new();
    let mut put = |key: &str, value: Value| map.insert(key.to_owned(), value);
    let host = system::host_architecture(&input.path_var);
    put(keys::ARCHITECTURES, system::architectures(&host, &input.path_var).into());
    put(keys::HOST_ARCHITECTURE, host.into());
    put(keys::CPU_COUNT, system::cpu_count(&input.sys_root, &input.proc_root).into());
    if let Some(bytes) = system::total_memory(&input.proc_root) {
        put(keys::TOTAL_MEMORY, bytes.into());
    }
    if let Some(bytes) = system::available_disk(&input.data_dir) {
        put(keys::AVAILABLE_DISK, bytes.into());
    }
    put(keys::EXECUTABLES, system::executables(&input.config.executables, &input.path_var).into());
    let role = match input.config.role {
        Role::Worker => "worker",
        Role::Signing => "signing",
    };
    put(keys::WORKER_ROLE, role.into());
    put(keys::CONCURRENCY, input.config.concurrency.into());
    let tasks = match input.config.role {
        Role::Worker => WORKER_TASKS,
        Role::Signing => crate::signing::SIGNING_TASKS,
    };
    for (task, version) in tasks {
        put(&keys::task_version(task), (*version).into());
    }
    if input.config.role == Role::Worker {
        crate::debian::advertise(&mut map, &input.path_var);
    }
    // A signing agent runs no untrusted code, so it needs (and probes) no backend.
    let enabled: &[String] = match input.config.role {
        Role::Worker => &input.config.backends.enabled,
        Role::Signing => &[],
    };
    backends::probe_into(&mut map, enabled, &input.agent_exe, BACKEND_PROBE_TIMEOUT, input.backend_depth);
    limits::probe_into(&mut map, &input.proc_root, &input.sys_root, &input.dev_root, &input.path_var);
    map
}

/// Keys added, removed or changed between two fingerprints, sorted.
pub fn changed_keys(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let all: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    all.into_iter().filter(|k| old.get(*k) != new.get(*k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendsConfig;
    use crate::fingerprint::run::tests::script;
    use serde_json::json;

    #[test]
    fn changed_keys_sees_additions_removals_and_changes() {
        let old = json!({"a": 1, "b": [1, 2], "c": true});
        let new = json!({"a": 1, "b": [2, 1], "d": "x"});
        let (old, new) = (old.as_object().expect("object"), new.as_object().expect("object"));
        assert_eq!(changed_keys(old, new), ["b", "c", "d"]);
        assert!(changed_keys(new, new).is_empty());
    }

    #[test]
    fn probes_a_fixture_host() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        for dir in ["proc/self", "sys/devices/system/cpu", "dev", "bin", "data"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        std::fs::write(root.path().join("proc/meminfo"), "MemTotal: 2048 kB\n").expect("write");
        std::fs::write(root.path().join("sys/devices/system/cpu/online"), "0-5\n").expect("write");
        script(&bin, "dpkg", "echo riscv64");
        script(&bin, "sbuild", "true");
        let agent = script(&bin, "kiln-agent", "echo 'unshare: user namespaces are disabled' >&2; exit 1");
        let config = AgentConfig {
            concurrency: 3,
            backends: BackendsConfig { enabled: vec!["unshare".into(), "incus-vm".into()] },
            ..AgentConfig::default()
        };
        let input = ProbeInput {
            config: &config,
            proc_root: root.path().join("proc"),
            sys_root: root.path().join("sys"),
            dev_root: root.path().join("dev"),
            data_dir: root.path().join("data"),
            path_var: bin.clone().into_os_string(),
            agent_exe: agent,
            backend_depth: ProbeDepth::Full,
        };
        let mut map = probe(&input);
        assert!(map.remove(keys::AVAILABLE_DISK).is_some_and(|v| v.as_u64().is_some_and(|b| b > 0)));
        // The Debian tasks are advertised (their availability is tested in
        // debian::tools): the fixture has an `sbuild` but not the rest.
        assert_eq!(map.get("sbuild:available"), Some(&json!(false)));
        let reason = map.get("sbuild:unavailable_reason").and_then(Value::as_str).unwrap_or_default();
        assert!(reason.contains("newuidmap") && !reason.contains("sbuild (package"), "{reason}");
        for (task, _) in crate::debian::TASKS {
            assert_eq!(map.remove(&format!("{task}:version")), Some(json!(1)), "{task}");
            assert!(map.remove(&format!("{task}:available")).is_some(), "{task}");
            map.remove(&format!("{task}:unavailable_reason"));
        }
        let expected = json!({
            "system:host_architecture": "riscv64",
            "system:architectures": ["riscv64"],
            "system:cpu_count": 6,
            "system:total_physical_memory": 2048 * 1024,
            "system:executables": ["sbuild"],
            "system:worker_role": "worker",
            "system:concurrency": 3,
            "noop:version": 1,
            "command:version": 1,
            "executor:unshare:available": false,
            "executor:unshare:reason": "unshare: user namespaces are disabled",
            "executor:incus-vm:available": false,
            "executor:incus-vm:reason": "unshare: user namespaces are disabled",
            "limits:cgroup": "none",
            "limits:memory": false,
            "limits:pids": false,
            "limits:cpu": false,
            "limits:disk_quota": false,
        });
        assert_eq!(Value::Object(map), expected);

        let signing =
            AgentConfig { role: Role::Signing, backends: BackendsConfig { enabled: vec![] }, ..config.clone() };
        let map = probe(&ProbeInput { config: &signing, ..input });
        assert_eq!(map.get(keys::WORKER_ROLE), Some(&json!("signing")));
        assert!(!map.contains_key("noop:version") && !map.contains_key("executor:unshare:available"));
        assert!(!map.contains_key("sbuild:version"), "signing agents run no Debian tasks");
    }
}
