//! `executor:<backend>:available`, probed for real: a backend is available
//! when it can run a task here, not when it is configured.

use super::run::run_with_timeout;
use kiln_shared::worker::keys;
use serde_json::{Map, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long `kiln-agent probe-backend <b>` may take.
pub const BACKEND_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A full probe runs a trial task in each backend (a container, a VM
/// boot); a quick one re-checks what can change between full probes
/// (`probe-backend --quick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeDepth {
    Full,
    Quick,
}

/// The `executor:<b>:available` keys whose values differ between two
/// fingerprints: a quick probe that sees one calls for a full probe.
pub fn availability_changed(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let is_availability = |k: &&String| k.starts_with("executor:") && k.ends_with(":available");
    let mut keys: Vec<String> =
        old.keys().chain(new.keys()).filter(is_availability).filter(|k| old.get(*k) != new.get(*k)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `executor:<backend>:reason`, set when the backend is unavailable.
pub fn backend_reason_key(backend: &str) -> String {
    format!("executor:{backend}:reason")
}

/// Adds `executor:<b>:available` (and `:reason` when false, or the extra
/// keys its probe reports when true) for each enabled backend.
pub(crate) fn probe_into(
    map: &mut Map<String, Value>,
    enabled: &[String],
    agent_exe: &Path,
    timeout: Duration,
    depth: ProbeDepth,
) {
    for backend in enabled {
        let result = match backend.as_str() {
            "unshare" | "incus-lxc" | "incus-vm" | "qemu" => probe_via_agent(agent_exe, backend, timeout, depth),
            other => Err(format!("unknown backend {other:?}")),
        };
        map.insert(keys::backend_available(backend), Value::Bool(result.is_ok()));
        match result {
            Ok(extra) => map.extend(extra),
            Err(reason) => {
                tracing::info!(%backend, %reason, "backend unavailable");
                map.insert(backend_reason_key(backend), Value::String(reason));
            }
        }
    }
}

/// Runs `<agent_exe> probe-backend <backend> [--quick]`: exit 0 means available, and
/// stdout lines `executor:<backend>:<key>=<JSON>` are extra metadata;
/// otherwise the reason is the last line it printed on stderr.
pub(crate) fn probe_via_agent(
    agent_exe: &Path,
    backend: &str,
    timeout: Duration,
    depth: ProbeDepth,
) -> Result<Map<String, Value>, String> {
    let mut cmd = Command::new(agent_exe);
    cmd.args(["probe-backend", backend]);
    if depth == ProbeDepth::Quick {
        cmd.arg("--quick");
    }
    let out = run_with_timeout(cmd, timeout).map_err(|e| e.to_string())?;
    if out.status.success() {
        let prefix = format!("executor:{backend}:");
        return Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with(&prefix) && !k.ends_with(":available") && !k.ends_with(":reason"))
            .filter_map(|(k, v)| Some((k.to_owned(), serde_json::from_str(v).ok()?)))
            .collect());
    }
    let last_line = out.stderr.lines().map(str::trim).rfind(|l| !l.is_empty());
    Err(match last_line {
        Some(line) => line.to_owned(),
        None => format!("`{} probe-backend {backend}` failed ({}) without saying why", agent_exe.display(), out.status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::run::tests::script;

    fn probe(enabled: &[&str], agent_exe: &Path, timeout: Duration) -> Map<String, Value> {
        let enabled: Vec<String> = enabled.iter().map(|b| b.to_string()).collect();
        let mut map = Map::new();
        probe_into(&mut map, &enabled, agent_exe, timeout, ProbeDepth::Full);
        map
    }

    #[test]
    fn a_backend_is_available_when_the_agent_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = script(
            dir.path(),
            "kiln-agent",
            r#"case "$1 $2" in
                "probe-backend unshare") exit 0 ;;
                "probe-backend incus-lxc") echo 'executor:incus-lxc:network=false'; echo 'executor:other:x=1'; exit 0 ;;
                *) echo 'vhost_vsock kernel module not loaded' >&2; exit 1 ;;
            esac"#,
        );
        let map = probe(&["unshare", "incus-lxc", "incus-vm"], &agent, BACKEND_PROBE_TIMEOUT);
        assert_eq!(map.get("executor:unshare:available"), Some(&Value::Bool(true)));
        assert_eq!(map.get("executor:unshare:reason"), None);
        assert_eq!(map.get("executor:incus-lxc:available"), Some(&Value::Bool(true)));
        assert_eq!(map.get("executor:incus-lxc:network"), Some(&Value::Bool(false)));
        assert_eq!(map.get("executor:other:x"), None, "a probe only speaks for its own backend");
        assert_eq!(map.get("executor:incus-vm:available"), Some(&Value::Bool(false)));
        assert_eq!(
            map.get("executor:incus-vm:reason"),
            Some(&Value::String("vhost_vsock kernel module not loaded".into()))
        );
        assert_eq!(map.len(), 5, "{map:?}");
    }

    #[test]
    fn the_reason_is_the_last_line_of_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent =
            script(dir.path(), "kiln-agent", "echo checking >&2; echo 'no user namespaces' >&2; echo >&2; exit 1");
        assert_eq!(
            probe_via_agent(&agent, "unshare", BACKEND_PROBE_TIMEOUT, ProbeDepth::Full),
            Err("no user namespaces".into())
        );
        let silent = script(dir.path(), "silent", "exit 2");
        let reason = probe_via_agent(&silent, "unshare", BACKEND_PROBE_TIMEOUT, ProbeDepth::Full).expect_err("fails");
        assert!(reason.contains("without saying why") && reason.contains("silent"), "{reason}");
        let missing = dir.path().join("no-such-agent");
        let reason = probe_via_agent(&missing, "unshare", BACKEND_PROBE_TIMEOUT, ProbeDepth::Full).expect_err("fails");
        assert!(reason.contains("no-such-agent"), "{reason}");
        let slow = script(dir.path(), "slow", "sleep 20");
        let reason =
            probe_via_agent(&slow, "unshare", Duration::from_millis(200), ProbeDepth::Full).expect_err("times out");
        assert!(reason.contains("did not finish"), "{reason}");
    }

    #[test]
    fn a_quick_probe_asks_for_the_quick_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Stands in for kiln-agent: says which probe it was asked for.
        let agent = script(
            dir.path(),
            "kiln-agent",
            r#"if [ "$3" = --quick ]; then echo 'executor:incus-lxc:depth="quick"'; else echo 'executor:incus-lxc:depth="full"'; fi"#,
        );
        let depth = |d| probe_via_agent(&agent, "incus-lxc", BACKEND_PROBE_TIMEOUT, d).expect("available");
        assert_eq!(depth(ProbeDepth::Quick).get("executor:incus-lxc:depth"), Some(&Value::from("quick")));
        assert_eq!(depth(ProbeDepth::Full).get("executor:incus-lxc:depth"), Some(&Value::from("full")));
    }

    #[test]
    fn only_availability_changes_call_for_a_full_probe() {
        let map = |v: Value| v.as_object().cloned().unwrap_or_default();
        let old = map(serde_json::json!({
            "executor:unshare:available": true,
            "executor:incus-lxc:available": true,
            "executor:incus-lxc:network": false,
            "system:available_disk_space": 1,
        }));
        let same = map(serde_json::json!({
            "executor:unshare:available": true,
            "executor:incus-lxc:available": true,
            "executor:incus-lxc:network": true,
            "system:available_disk_space": 2,
        }));
        assert!(availability_changed(&old, &same).is_empty());
        let lost = map(serde_json::json!({
            "executor:unshare:available": true,
            "executor:incus-lxc:available": false,
            "executor:incus-lxc:reason": "Incus is not running",
            "executor:qemu:available": true,
        }));
        assert_eq!(
            availability_changed(&old, &lost),
            vec!["executor:incus-lxc:available".to_owned(), "executor:qemu:available".to_owned()]
        );
    }
}
