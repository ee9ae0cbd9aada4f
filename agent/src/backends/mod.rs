//! The four execution backends behind one [`Backend`] trait (DESIGN §5):
//! `unshare` (namespaces, `sandbox/`), `incus-lxc` and `incus-vm` (Incus's
//! REST API, `incus/`), `qemu` (`qemu-system-<arch>` run directly, `qemu/`).
//!
//! A backend is used in three places, each its own process:
//! - the probe (`kiln-agent probe-backend <name>`) tries it for real;
//! - the daemon [`Backend::prepare`]s a task: it describes the task in the
//!   task directory (an OCI spec for unshare, `task.json` for the others);
//! - the task's shim [`Backend::run`]s it from that description, owning the
//!   instance (container, VM) until it is gone, and a daemon that finds a
//!   shim gone without a status asks the backend to [`Backend::cleanup`].

pub mod host_tool;
pub mod incus;
pub mod qemu;
pub mod spec;
mod unshare;

use crate::supervisor::logfile::LogWriter;
use crate::supervisor::task_dir::{Outcome, TaskDir};
use serde_json::Value;
use std::path::PathBuf;

pub const UNSHARE: &str = "unshare";
pub const INCUS_LXC: &str = "incus-lxc";
pub const INCUS_VM: &str = "incus-vm";
pub const QEMU: &str = "qemu";

/// Simplest first: the order in which `backend: auto` picks (DESIGN §5).
pub const BY_SIMPLICITY: [&str; 4] = [UNSHARE, INCUS_LXC, INCUS_VM, QEMU];

/// Environment categories (DESIGN §5).
pub const SYSTEM_TARBALL: &str = "kiln:system-tarball";
pub const SYSTEM_IMAGE: &str = "kiln:system-image";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid task description: {0}")]
    Spec(String),
    #[error("failed to {what}: {message}")]
    Failed { what: String, message: String },
    #[error(transparent)]
    Incus(#[from] incus::IncusError),
    #[error("failed to {what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl BackendError {
    pub fn failed(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        BackendError::Failed { what: what.into(), message: message.to_string() }
    }
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
        let what = what.into();
        move |source| BackendError::Io { what, source }
    }
}

/// What every backend needs to know about one task, resolved by the daemon.
#[derive(Debug, Clone)]
pub struct TaskParams {
    pub args: Vec<String>,
    /// The task's own environment, on top of the defaults.
    pub env: Vec<(String, String)>,
    /// Give it network (the task asked and the agent allows it).
    pub network: bool,
    pub memory: u64,
    pub pids: u64,
    /// 0: no CPU limit.
    pub cpus: f64,
    /// Quota of the writable layer; `None` when it cannot be enforced.
    pub disk_quota: Option<u64>,
    pub tmp_size: u64,
    pub timeout_secs: u64,
    /// A line for the top of the task's log.
    pub notice: Option<String>,
    /// Enforceable cgroup controllers (unshare).
    pub controllers: Option<Vec<String>>,
    /// The environment's artifact id.
    pub artifact_id: i64,
    /// The cached environment: an unpacked root (tarballs) or the image's
    /// files (system images).
    pub image: PathBuf,
}

/// Facts about this agent that backends use when preparing a task.
#[derive(Debug, Clone)]
pub struct AgentSide {
    pub data_dir: PathBuf,
    /// The Incus project holding this agent's images and instances.
    pub incus_project: String,
    /// Where QEMU base images live.
    pub qemu_store: PathBuf,
}

impl AgentSide {
    pub fn new(data_dir: &std::path::Path) -> Self {
        AgentSide {
            data_dir: data_dir.to_owned(),
            incus_project: incus::project_name(data_dir),
            qemu_store: qemu::store_dir(data_dir),
        }
    }
}

/// How a task ended, as the shim records it in `status.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub setup_error: Option<String>,
    pub oom_killed: bool,
    pub memory_peak: Option<u64>,
}

impl RunOutcome {
    pub fn exited(outcome: Outcome, exit_code: Option<i32>) -> Self {
        RunOutcome { outcome, exit_code, setup_error: None, oom_killed: false, memory_peak: None }
    }
}

/// One way of running a task in isolation.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// The artifact category of the environments it runs.
    fn image_category(&self) -> &'static str;
    /// The image store an environment must be imported into first, if any.
    fn store(&self) -> Option<&'static str>;
    /// Try it for real: extra metadata keys when it works, why not otherwise.
    fn probe(&self) -> Result<Vec<(String, Value)>, String>;
    /// The periodic re-check between full probes: what can change without
    /// a trial run (a daemon gone, a binary removed). Backends whose full
    /// probe is a trial container or VM override it; the rest probe fully.
    fn probe_quick(&self) -> Result<Vec<(String, Value)>, String> {
        self.probe()
    }
    /// Daemon side: describe the task in `dir` for the shim.
    fn prepare(&self, task: &TaskParams, agent: &AgentSide, dir: &TaskDir) -> Result<(), BackendError>;
    /// Shim side: run the task `dir` describes until it ends, times out or
    /// the shim is asked to stop; clean up whatever it created.
    fn run(&self, dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError>;
    /// Daemon side, after the shim vanished without a status: remove what
    /// the task may have left; the problems met.
    fn cleanup(&self, dir: &TaskDir) -> Vec<String>;
}

/// The image stores of the enabled backends that have one.
pub fn image_stores(
    config: &crate::config::AgentConfig,
    agent_exe: &std::path::Path,
) -> Vec<std::sync::Arc<dyn crate::image_cache::stores::ImageStore>> {
    let side = AgentSide::new(&config.data_dir);
    let enabled = |b: &str| config.backends.enabled.iter().any(|e| e == b);
    let mut stores: Vec<std::sync::Arc<dyn crate::image_cache::stores::ImageStore>> = Vec::new();
    if enabled(INCUS_LXC) && incus::default_socket().exists() {
        stores.push(std::sync::Arc::new(incus::store::IncusStore::new(&side.incus_project)));
    }
    if enabled(QEMU) {
        stores.push(std::sync::Arc::new(qemu::store::QemuStore::new(side.qemu_store, agent_exe.to_owned())));
    }
    // Debian tools read environments as tarballs (sbuild, autopkgtest).
    if config.role == crate::config::Role::Worker {
        let dir = crate::debian::tarballs::store_dir(&config.data_dir);
        stores.push(std::sync::Arc::new(crate::debian::tarballs::TarballStore::new(dir)));
    }
    stores
}

/// The backend called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Backend> {
    match name {
        UNSHARE => Some(&unshare::Unshare),
        INCUS_LXC => Some(&incus::IncusLxc),
        INCUS_VM => Some(&incus::IncusVm),
        QEMU => Some(&qemu::Qemu),
        host_tool::HOST_TOOL => Some(&host_tool::HostTool),
        _ => None,
    }
}

/// The backend a task directory belongs to: `task.json` names it; a
/// directory with only an OCI spec is unshare's.
pub fn of_task(dir: &TaskDir) -> Result<&'static dyn Backend, BackendError> {
    match spec::TaskSpec::load(dir)? {
        Some(spec) => by_name(&spec.backend)
            .ok_or_else(|| BackendError::Spec(format!("unknown backend {:?} in task.json", spec.backend))),
        None => Ok(&unshare::Unshare),
    }
}
