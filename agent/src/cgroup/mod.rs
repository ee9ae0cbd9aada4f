//! Control groups for tasks: memory, pids and cpu limits under cgroup v2, v1
//! or a hybrid of both (v1 controllers plus an empty v2 mount).
//!
//! [`detect`] reads `/proc/self/{mountinfo,cgroup}` under a given root, so
//! tests point it at fixture files; [`probe_enforceable`] finds out what the
//! host really allows by creating and removing a child cgroup; a
//! [`TaskCgroup`] lives at `<mount>/<this process's cgroup>/kiln/<name>` in
//! every hierarchy that holds one of the three controllers.

mod detect;
mod fsutil;
mod lifecycle;
mod probe;
mod task;

pub use detect::{detect, CgroupLayout, Placement, Unified};
pub use probe::probe_enforceable;
pub use task::TaskCgroup;

use std::fmt;
use std::path::PathBuf;

/// Directory, inside this process's own cgroup, that holds the task cgroups.
pub const KILN_DIR: &str = "kiln";

/// The controllers Kiln enforces limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name for it, as in `/proc/self/cgroup` and `cgroup.controllers`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which cgroup hierarchy a controller sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Limits of one task; `None` leaves that resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// Bytes of memory (and, where the kernel accounts it, memory plus swap).
    pub memory: Option<u64>,
    /// Most processes and threads.
    pub pids: Option<u64>,
    /// CPUs' worth of time per period; `Some(0.0)` means no limit, like `limits.cpus = 0`.
    pub cpus: Option<f64>,
}

impl CgroupLimits {
    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut needed = Vec::new();
        if self.memory.is_some() {
            needed.push(Controller::Memory);
        }
        if self.pids.is_some() {
            needed.push(Controller::Pids);
        }
        if self.cpus.is_some_and(|c| c > 0.0) {
            needed.push(Controller::Cpu);
        }
        needed
    }
}

/// What this host lets Kiln enforce (`limits:*` metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforceable {
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
    /// `"v1"`, `"v2"`, `"hybrid"` or `"none"`, over the enforceable controllers.
    pub version: String,
}

impl Enforceable {
    /// Is this controller enforceable?
    pub fn allows(&self, controller: Controller) -> bool {
        match controller {
            Controller::Memory => self.memory,
            Controller::Pids => self.pids,
            Controller::Cpu => self.cpu,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid task cgroup name {0:?}: use 1-200 letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidName(String),
    #[error("invalid cgroup limit: {0}")]
    InvalidLimit(String),
    #[error("failed to add pid {0} to a cgroup: not a process id")]
    InvalidPid(i32),
    #[error("failed to limit {controller}: no {controller} controller in this cgroup layout")]
    ControllerMissing { controller: Controller },
    #[error("failed to create task cgroup {name:?}: no memory, pids or cpu controller in this cgroup layout")]
    NoControllers { name: String },
    #[error("failed to open task cgroup {name:?}: none of {paths:?} exists")]
    NotFound { name: String, paths: Vec<PathBuf> },
    #[error("failed to create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("failed to write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: std::io::Error },
    #[error("failed to remove {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("failed to send SIGKILL to pid {pid} of {path}: {source}")]
    Kill { pid: i32, path: PathBuf, source: nix::Error },
    #[error("failed to empty {path}: pids {remaining:?} still there after killing for {waited_ms} ms")]
    StillPopulated { path: PathBuf, remaining: Vec<i32>, waited_ms: u64 },
    #[error("{first}; cleaning up afterwards also failed: {cleanup}")]
    CleanupFailed { first: Box<CgroupError>, cleanup: Box<CgroupError> },
}

impl CgroupError {
    /// `first`, or both errors when cleaning up after it failed too.
    pub(crate) fn with_cleanup(first: CgroupError, cleanup: Result<(), CgroupError>) -> CgroupError {
        match cleanup {
            Ok(()) => first,
            Err(cleanup) => CgroupError::CleanupFailed { first: Box::new(first), cleanup: Box::new(cleanup) },
        }
    }
}
