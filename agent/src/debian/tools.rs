//! Which host programs each Debian task needs, whether they are here (the
//! fingerprint's `<task>:available`, with the reason when not), and the
//! versions of the Debian packages behind them (`output_data.provenance`).

use crate::fingerprint::find_on_path;
use serde_json::{json, Map, Value};
use std::ffi::OsStr;

/// The Debian tasks and their versions (`<task>:version`).
pub const TASKS: &[(&str, u32)] =
    &[("mmdebstrap", 1), ("sbuild", 1), ("lintian", 1), ("autopkgtest", 1), ("extract_test_restrictions", 1)];

/// `(program, Debian package)` pairs a task needs.
fn needs(task: &str) -> &'static [(&'static str, &'static str)] {
    match task {
        "mmdebstrap" => &[("mmdebstrap", "mmdebstrap"), ("newuidmap", "uidmap")],
        "sbuild" => &[("sbuild", "sbuild"), ("newuidmap", "uidmap"), ("dpkg-source", "dpkg-dev")],
        "lintian" => &[("lintian", "lintian"), ("bwrap", "bubblewrap")],
        "autopkgtest" => &[("autopkgtest", "autopkgtest"), ("autopkgtest-virt-unshare", "autopkgtest")],
        "extract_test_restrictions" => &[("dpkg-source", "dpkg-dev"), ("bwrap", "bubblewrap")],
        _ => &[],
    }
}

/// Why `task` cannot run with programs found on `path_var`, if it cannot.
pub fn missing_on(task: &str, path_var: &OsStr) -> Option<String> {
    let absent: Vec<String> = needs(task)
        .iter()
        .filter(|(program, _)| find_on_path(program, path_var).is_none())
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect();
    (!absent.is_empty()).then(|| format!("not installed: {}", absent.join(", ")))
}

/// Why `task` cannot run on this host now, if it cannot.
pub fn missing(task: &str) -> Option<String> {
    missing_on(task, &std::env::var_os("PATH").unwrap_or_default())
}

/// `<task>:version` always (the scheduler needs to know the agent knows the
/// task), `<task>:available` from the programs found, and the reason when
/// one is missing; the scheduler assigns only where it is available.
pub fn advertise(map: &mut Map<String, Value>, path_var: &OsStr) {
    for (task, version) in TASKS {
        map.insert(format!("{task}:version"), json!(version));
        let why = missing_on(task, path_var);
        map.insert(format!("{task}:available"), json!(why.is_none()));
        if let Some(why) = why {
            map.insert(format!("{task}:unavailable_reason"), json!(why));
        }
    }
}

/// The installed versions of the packages behind `task`'s programs.
pub fn provenance(task: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (_, package) in needs(task) {
        if out.contains_key(*package) {
            continue;
        }
        let version = std::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", package])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        out.insert((*package).to_owned(), json!(version));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::tests_support::script;

    #[test]
    fn advertises_what_the_programs_on_path_allow() {
        let dir = tempfile::tempdir().expect("tmp");
        for program in ["lintian", "bwrap"] {
            script(dir.path(), program, "true");
        }
        let mut map = Map::new();
        advertise(&mut map, dir.path().as_os_str());
        assert_eq!(map["lintian:available"], json!(true));
        assert_eq!(map["lintian:version"], json!(1));
        assert_eq!(map["sbuild:available"], json!(false));
        let why = map["sbuild:unavailable_reason"].as_str().expect("reason");
        assert!(why.contains("sbuild (package sbuild)"), "{why}");
        assert!(!map.contains_key("lintian:unavailable_reason"));
    }
}
