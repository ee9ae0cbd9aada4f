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

/// The reason given for backends this build cannot run yet.
pub const NOT_IMPLEMENTED: &str = "backend not implemented in this build yet";

/// `executor:<backend>:reason`, set when the backend is unavailable.
pub fn backend_reason_key(backend: &str) -> String {
    format!("executor:{backend}:reason")
}

/// Adds `executor:<b>:available` (and `:reason` when false) for each enabled backend.
pub(crate) fn probe_into(map: &mut Map<String, Value>, enabled: &[String], agent_exe: &Path, timeout: Duration) {
    for backend in enabled {
        let result = match backend.as_str() {
            "unshare" => probe_via_agent(agent_exe, backend, timeout),
            "incus-lxc" | "incus-vm" | "qemu" => Err(NOT_IMPLEMENTED.to_owned()),
            other => Err(format!("unknown backend {other:?}")),
        };
        map.insert(keys::backend_available(backend), Value::Bool(result.is_ok()));
        if let Err(reason) = result {
            tracing::info!(%backend, %reason, "backend unavailable");
            map.insert(backend_reason_key(backend), Value::String(reason));
        }
    }
}

/// Runs `<agent_exe> probe-backend <backend>`: exit 0 means available;
/// otherwise the reason is the last line it printed on stderr.
pub(crate) fn probe_via_agent(agent_exe: &Path, backend: &str, timeout: Duration) -> Result<(), String> {
    let mut cmd = Command::new(agent_exe);
    cmd.args(["probe-backend", backend]);
    let out = run_with_timeout(cmd, timeout).map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
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
        probe_into(&mut map, &enabled, agent_exe, timeout);
        map
    }

    #[test]
    fn unshare_is_available_when_the_agent_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = script(dir.path(), "kiln-agent", r#"[ "$1 $2" = "probe-backend unshare" ] || exit 9"#);
        let map = probe(&["unshare", "qemu"], &agent, BACKEND_PROBE_TIMEOUT);
        assert_eq!(map.get("executor:unshare:available"), Some(&Value::Bool(true)));
        assert_eq!(map.get("executor:unshare:reason"), None);
        assert_eq!(map.get("executor:qemu:available"), Some(&Value::Bool(false)));
        assert_eq!(map.get("executor:qemu:reason"), Some(&Value::String(NOT_IMPLEMENTED.into())));
        assert_eq!(map.len(), 3, "{map:?}");
    }

    #[test]
    fn the_reason_is_the_last_line_of_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent =
            script(dir.path(), "kiln-agent", "echo checking >&2; echo 'no user namespaces' >&2; echo >&2; exit 1");
        assert_eq!(probe_via_agent(&agent, "unshare", BACKEND_PROBE_TIMEOUT), Err("no user namespaces".into()));
        let silent = script(dir.path(), "silent", "exit 2");
        let reason = probe_via_agent(&silent, "unshare", BACKEND_PROBE_TIMEOUT).expect_err("fails");
        assert!(reason.contains("without saying why") && reason.contains("silent"), "{reason}");
        let missing = dir.path().join("no-such-agent");
        let reason = probe_via_agent(&missing, "unshare", BACKEND_PROBE_TIMEOUT).expect_err("fails");
        assert!(reason.contains("no-such-agent"), "{reason}");
        let slow = script(dir.path(), "slow", "sleep 20");
        let reason = probe_via_agent(&slow, "unshare", Duration::from_millis(200)).expect_err("times out");
        assert!(reason.contains("did not finish"), "{reason}");
    }
}
