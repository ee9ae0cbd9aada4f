//! `task.json`: how the daemon describes a task to the shim for the
//! backends that do not use an OCI spec (incus-lxc, qemu). Versioned, written
//! atomically once, read by the shim (and by the daemon when it cleans up
//! after a lost shim).

use super::{BackendError, TaskParams};
use crate::supervisor::task_dir::{write_atomic_relaxed, TaskDir};
use serde::{Deserialize, Serialize};

pub const TASK_SPEC_VERSION: u32 = 1;

/// Where the task's output directory is inside the instance.
pub const OUTPUT_DIR: &str = crate::sandbox::OUTPUT_IN_SANDBOX;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub version: u32,
    pub backend: String,
    pub args: Vec<String>,
    /// `KEY=VALUE`, defaults included (as in an OCI spec).
    pub env: Vec<String>,
    pub cwd: String,
    pub network: bool,
    pub memory: u64,
    pub pids: u64,
    pub cpus: f64,
    pub timeout_secs: u64,
    pub notice: Option<String>,
    #[serde(default)]
    pub incus: Option<super::incus::IncusTask>,
    #[serde(default)]
    pub qemu: Option<super::qemu::QemuTask>,
    #[serde(default)]
    pub host: Option<super::host_tool::HostTask>,
}

impl TaskSpec {
    /// The parts every backend shares.
    pub fn common(backend: &str, task: &TaskParams) -> Self {
        TaskSpec {
            version: TASK_SPEC_VERSION,
            backend: backend.to_owned(),
            args: task.args.clone(),
            env: crate::sandbox::spec::environment(&task.env),
            cwd: "/root".to_owned(),
            network: task.network,
            memory: task.memory,
            pids: task.pids,
            cpus: task.cpus,
            timeout_secs: task.timeout_secs,
            notice: task.notice.clone(),
            incus: None,
            qemu: None,
            host: None,
        }
    }

    pub fn save(&self, dir: &TaskDir) -> Result<(), BackendError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| BackendError::Spec(e.to_string()))?;
        write_atomic_relaxed(&dir.task(), &bytes).map_err(BackendError::io(format!("write {}", dir.task().display())))
    }

    /// The task's `task.json`, if it has one.
    pub fn load(dir: &TaskDir) -> Result<Option<Self>, BackendError> {
        let path = dir.task();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackendError::io(format!("read {}", path.display()))(e)),
        };
        let spec: TaskSpec = serde_json::from_slice(&bytes)
            .map_err(|e| BackendError::Spec(format!("{} is not a task description: {e}", path.display())))?;
        if spec.version != TASK_SPEC_VERSION {
            return Err(BackendError::Spec(format!("{}: unknown version {}", path.display(), spec.version)));
        }
        Ok(Some(spec))
    }

    /// `task.json` of `dir`, which this backend needs.
    pub fn require(dir: &TaskDir) -> Result<Self, BackendError> {
        Self::load(dir)?.ok_or_else(|| BackendError::Spec(format!("{} is missing", dir.task().display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let dir = tempfile::tempdir().expect("tmp");
        let td = TaskDir::new(dir.path());
        assert_eq!(TaskSpec::load(&td).expect("none"), None);
        let task = TaskParams {
            args: vec!["true".into()],
            env: vec![("A".into(), "b".into())],
            network: false,
            memory: 1 << 30,
            pids: 100,
            cpus: 0.0,
            disk_quota: None,
            tmp_size: 1 << 20,
            timeout_secs: 5,
            notice: None,
            controllers: None,
            artifact_id: 3,
            image: "/cache/3/rootfs".into(),
        };
        let spec = TaskSpec::common("qemu", &task);
        assert!(spec.env.contains(&"A=b".to_owned()) && spec.env.contains(&"KILN_OUTPUT=/kiln/output".to_owned()));
        spec.save(&td).expect("save");
        assert_eq!(TaskSpec::require(&td).expect("load"), spec);
        std::fs::write(td.task(), serde_json::to_vec(&TaskSpec { version: 9, ..spec }).expect("json")).expect("w");
        assert!(TaskSpec::load(&td).is_err());
    }
}
