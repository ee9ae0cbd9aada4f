//! Incus helpers for end-to-end tests, through the `incus` command line (the
//! "raw tool"; the agent itself uses the REST API): is Incus running, what
//! an agent's project holds, and removing the project when a test is done.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Why Incus cannot be used here, if it cannot.
pub fn missing() -> Option<String> {
    let socket = std::env::var_os("INCUS_SOCKET").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("INCUS_DIR")
            .map(|d| Path::new(&d).join("unix.socket"))
            .unwrap_or_else(|| "/var/lib/incus/unix.socket".into())
    });
    if !socket.exists() {
        return Some(format!("Incus is not running ({} is missing): scripts/setup starts it", socket.display()));
    }
    match Command::new("incus").args(["query", "/1.0"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("incus query /1.0 failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("the incus command is missing ({e}): scripts/setup installs it")),
    }
}

/// The Incus project of the agent with data directory `data_dir` (as the
/// agent names it: `kiln-` and 12 hex digits of the directory's sha256).
pub fn project_of(data_dir: &Path) -> String {
    use sha2::Digest;
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("kiln-{}", &hex::encode(digest)[..12])
}

/// `incus query <path>` as JSON.
pub fn query(path: &str) -> Value {
    let out = Command::new("incus").args(["query", path]).output().expect("run incus query");
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Names of the instances in `project`.
pub fn instances(project: &str) -> Vec<String> {
    query(&format!("/1.0/instances?project={project}&recursion=1"))
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Aliases (`kiln/<id>`) of the images in `project`, sorted; an image
/// without alias shows as its fingerprint.
pub fn images(project: &str) -> Vec<String> {
    let mut names: Vec<String> = query(&format!("/1.0/images?project={project}&recursion=1"))
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    i["aliases"][0]["name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i["fingerprint"].as_str().unwrap_or("?").to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Run `incus <args>`, panicking with its stderr when it fails.
pub fn incus(args: &[&str]) -> String {
    let out = Command::new("incus").args(args).output().expect("run incus");
    assert!(out.status.success(), "incus {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes an agent's Incus project (instances, images, the project) when
/// dropped, so tests leave Incus as they found it.
pub struct ProjectGuard(pub String);

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        // A shim finishing its work may still remove or make a container:
        // try again for a few seconds until the project is gone.
        for _ in 0..20 {
            if self.clean_once() || query(&format!("/1.0/projects/{}", self.0)).is_null() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        eprintln!("warning: could not delete the Incus project {}", self.0);
    }
}

impl ProjectGuard {
    /// Delete instances, images, then the project; did the last work?
    fn clean_once(&self) -> bool {
        let p = &self.0;
        for name in instances(p) {
            let _ = Command::new("incus").args(["delete", "--force", "--project", p, &name]).output();
        }
        let fingerprints: Vec<String> = query(&format!("/1.0/images?project={p}&recursion=1"))
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["fingerprint"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        for f in fingerprints {
            let _ = Command::new("incus").args(["image", "delete", "--project", p, &f]).output();
        }
        Command::new("incus").args(["project", "delete", p]).output().is_ok_and(|o| o.status.success())
    }
}

/// Skip an Incus test (with the marker CI looks for) when Incus is missing.
#[macro_export]
macro_rules! require_incus {
    () => {
        $crate::require_privileged!();
        if let Some(reason) = $crate::incus::missing() {
            println!("SKIPPED-BACKEND: {reason}");
            return;
        }
    };
}
