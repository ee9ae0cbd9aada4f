//! The unshare backend's sandbox. A task's sandbox is described once as an
//! OCI runtime spec (`spec`), written into the task directory, and executed
//! by the synchronous shim process: `rootfs` prepares the writable layer on
//! the host side, `launch` creates the namespaces and maps ids, `container`
//! runs inside them as pid 1 and execs the task. Nothing here runs inside
//! the agent's tokio process.

pub mod container;
pub mod launch;
mod net;
mod signals;
pub use signals::shim as signals_for_shim;
pub mod rootfs;
pub mod spec;

/// Container ids 0..ID_MAP_SIZE appear on the host as ID_MAP_BASE + id: root
/// inside a sandbox is an unprivileged uid outside it.
pub const ID_MAP_BASE: u32 = 100_000;
pub const ID_MAP_SIZE: u32 = 65_536;

/// Where the task's output directory appears inside the sandbox.
pub const OUTPUT_IN_SANDBOX: &str = "/kiln/output";

/// Where a shim mounts its task's root and output for the sandbox to reach.
/// The sandbox's root is an unprivileged uid on the host: it cannot walk
/// through the agent's data directory if a parent of it is mode 0700 (a
/// `mktemp -d`, a locked-down /var/lib), so the paths it uses live under a
/// directory the shim creates world-searchable. The mounts exist only in the
/// shim's private mount namespace.
pub const RUNTIME_DIR: &str = "/run/kiln-agent";

/// The root and output mount points of the task called `name`.
pub fn runtime_paths(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = std::path::Path::new(RUNTIME_DIR);
    (base.join("roots").join(name), base.join("outputs").join(name))
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    #[error("failed to {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("failed to {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("failed to {what}: {message}")]
    Setup { what: String, message: String },
}

impl SandboxError {
    pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
        let what = what.into();
        move |source| SandboxError::Sys { what, source }
    }
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let what = what.into();
        move |source| SandboxError::Io { what, source }
    }
}
