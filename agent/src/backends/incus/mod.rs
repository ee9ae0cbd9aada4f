//! The Incus backends, through Incus's REST API on its unix socket (never
//! the `incus` command line).
//!
//! - `incus-lxc`: a `kiln:system-tarball` is imported once as an Incus
//!   image (split format: a generated metadata tarball plus the rootfs
//!   tarball as downloaded) with the alias `kiln/<artifact id>`; each task
//!   runs in an ephemeral, unprivileged container made from it, with no NIC
//!   unless the task may use the network and Incus has one configured; the
//!   command is executed over the exec API with its output streamed over
//!   websockets; `/kiln/output` is pushed and pulled through the file API;
//!   the container is deleted however the task ends.
//! - `incus-vm`: probed for real (Incus's own VM support); this build does
//!   not run tasks in Incus VMs (see docs/system-image.md).
//!
//! Every agent keeps its images and instances in an Incus project of its
//! own (`kiln-<hash of its data directory>`), so that several agents (and
//! their coordinators' artifact ids) can share one Incus.

mod client;
mod exec;
mod files;
pub mod images;
mod instance;
mod probe;
mod run;
pub mod store;

pub use client::{default_socket, Client, IncusError};

use super::spec::TaskSpec;
use super::{AgentSide, Backend, BackendError, RunOutcome, TaskParams, INCUS_LXC, INCUS_VM, SYSTEM_IMAGE};
use crate::supervisor::logfile::LogWriter;
use crate::supervisor::task_dir::TaskDir;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Init for images without one: keeps the container alive while tasks run
/// (`lxc.init.cmd` takes no quoting, so no shell loop).
pub const KEEPALIVE_INIT: &str = "/bin/sleep 2147483647";

/// What the shim needs to run an incus-lxc task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncusTask {
    pub socket: PathBuf,
    pub project: String,
    /// The instance's name, unique on this host and stable for the task.
    pub instance: String,
    pub image_alias: String,
    /// The image has no init of its own: run [`KEEPALIVE_INIT`] as pid 1.
    pub keepalive_init: bool,
}

/// The Incus project of the agent whose data directory is `data_dir`.
pub fn project_name(data_dir: &Path) -> String {
    use sha2::Digest;
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("kiln-{}", &hex::encode(digest)[..12])
}

/// The alias of an environment's image in the agent's project.
pub fn alias(artifact_id: i64) -> String {
    format!("kiln/{artifact_id}")
}

/// Incus's name for a Debian architecture.
pub fn incus_architecture(debian: &str) -> Option<&'static str> {
    Some(match debian {
        "amd64" => "x86_64",
        "i386" => "i686",
        "arm64" => "aarch64",
        "armhf" => "armv7l",
        "armel" => "armv6l",
        "ppc64el" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64el" => "mips64",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// Does the root filesystem at `rootfs` have an init to boot?
fn has_init(rootfs: &Path) -> bool {
    ["sbin/init", "usr/sbin/init", "lib/systemd/systemd"]
        .iter()
        .any(|p| std::fs::symlink_metadata(rootfs.join(p)).is_ok())
}

pub struct IncusLxc;

impl Backend for IncusLxc {
    fn name(&self) -> &'static str {
        INCUS_LXC
    }
    fn image_category(&self) -> &'static str {
        super::SYSTEM_TARBALL
    }
    fn store(&self) -> Option<&'static str> {
        Some(store::STORE_NAME)
    }
    fn probe(&self) -> Result<Vec<(String, Value)>, String> {
        probe::containers(probe::Trial::Run)
    }
    fn probe_quick(&self) -> Result<Vec<(String, Value)>, String> {
        probe::containers(probe::Trial::Skip)
    }
    fn prepare(&self, task: &TaskParams, agent: &AgentSide, dir: &TaskDir) -> Result<(), BackendError> {
        let mut spec = TaskSpec::common(INCUS_LXC, task);
        spec.incus = Some(IncusTask {
            socket: default_socket(),
            project: agent.incus_project.clone(),
            instance: instance::name_for(&dir.path),
            image_alias: alias(task.artifact_id),
            keepalive_init: !has_init(&task.image),
        });
        std::fs::create_dir_all(dir.output()).map_err(BackendError::io("create the output directory"))?;
        spec.save(dir)
    }
    fn run(&self, dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
        run::run(dir, log)
    }
    fn cleanup(&self, dir: &TaskDir) -> Vec<String> {
        run::cleanup(dir)
    }
}

pub struct IncusVm;

impl Backend for IncusVm {
    fn name(&self) -> &'static str {
        INCUS_VM
    }
    fn image_category(&self) -> &'static str {
        SYSTEM_IMAGE
    }
    fn store(&self) -> Option<&'static str> {
        None
    }
    fn probe(&self) -> Result<Vec<(String, Value)>, String> {
        probe::virtual_machines()
    }
    fn prepare(&self, _: &TaskParams, _: &AgentSide, _: &TaskDir) -> Result<(), BackendError> {
        Err(BackendError::Spec("this build does not run tasks in Incus virtual machines".into()))
    }
    fn run(&self, _: &TaskDir, _: &LogWriter) -> Result<RunOutcome, BackendError> {
        Err(BackendError::Spec("this build does not run tasks in Incus virtual machines".into()))
    }
    fn cleanup(&self, _: &TaskDir) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_valid() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = project_name(dir.path());
        assert_eq!(p, project_name(dir.path()));
        assert!(p.starts_with("kiln-") && p.len() == 17, "{p}");
        assert_eq!(alias(7), "kiln/7");
        assert_eq!(incus_architecture("amd64"), Some("x86_64"));
        assert_eq!(incus_architecture("arm64"), Some("aarch64"));
        assert_eq!(incus_architecture("hurd-i386"), None);
    }

    #[test]
    fn an_image_without_init_gets_the_keepalive() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(!has_init(dir.path()));
        std::fs::create_dir_all(dir.path().join("sbin")).expect("mkdir");
        std::os::unix::fs::symlink("../bin/busybox", dir.path().join("sbin/init")).expect("link");
        assert!(has_init(dir.path()), "a dangling symlink on the host still names an init inside");
    }
}
