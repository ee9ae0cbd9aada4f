//! The unshare backend behind the [`Backend`] trait: the sandbox itself
//! lives in `crate::sandbox` (an OCI spec in the task directory, executed
//! by the shim); this adapter prepares that spec from the task's parameters,
//! probes with `crate::probe`, and runs with the shim's sandbox supervisor.

use super::{AgentSide, Backend, BackendError, RunOutcome, TaskParams, SYSTEM_TARBALL, UNSHARE};
use crate::sandbox::spec::{self, SandboxParams};
use crate::supervisor::logfile::LogWriter;
use crate::supervisor::task_dir::TaskDir;
use serde_json::Value;

pub struct Unshare;

impl Unshare {
    /// The sandbox parameters of a task in `dir`.
    pub fn sandbox_params(task: &TaskParams, dir: &TaskDir) -> SandboxParams {
        let (rootfs, output_mount) = crate::sandbox::runtime_paths(&crate::supervisor::shim::cgroup_name(&dir.path));
        SandboxParams {
            lower: task.image.clone(),
            rootfs,
            output: dir.output(),
            output_mount,
            args: task.args.clone(),
            env: task.env.clone(),
            network: task.network,
            memory: task.memory,
            pids: task.pids,
            cpus: task.cpus,
            disk_quota: task.disk_quota,
            tmp_size: task.tmp_size,
            timeout_secs: task.timeout_secs,
            notice: task.notice.clone(),
            controllers: task.controllers.clone(),
        }
    }
}

impl Backend for Unshare {
    fn name(&self) -> &'static str {
        UNSHARE
    }
    fn image_category(&self) -> &'static str {
        SYSTEM_TARBALL
    }
    fn store(&self) -> Option<&'static str> {
        None
    }
    fn probe(&self) -> Result<Vec<(String, Value)>, String> {
        crate::probe::unshare_works().map(|()| Vec::new())
    }
    fn prepare(&self, task: &TaskParams, _: &AgentSide, dir: &TaskDir) -> Result<(), BackendError> {
        let spec = spec::build(&Self::sandbox_params(task, dir)).map_err(|e| BackendError::Spec(e.to_string()))?;
        spec::save(&spec, &dir.path).map_err(|e| BackendError::Spec(e.to_string()))?;
        Ok(())
    }
    fn run(&self, dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
        crate::supervisor::shim::run_sandbox(dir, log).map_err(|e| BackendError::failed("set up the sandbox", e))
    }
    fn cleanup(&self, dir: &TaskDir) -> Vec<String> {
        // The sandbox's processes live in its cgroup, which the daemon
        // removes; the mounts vanished with the shim's mount namespace.
        let name = crate::supervisor::shim::cgroup_name(&dir.path);
        let layout = crate::cgroup::detect(std::path::Path::new("/proc"), std::path::Path::new("/sys"));
        match crate::cgroup::TaskCgroup::open(&layout, &name) {
            Ok(cg) => cg.remove().err().map(|e| vec![e.to_string()]).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}
