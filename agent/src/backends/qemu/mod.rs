//! The qemu backend: `qemu-system-<arch>` run directly on a
//! `kiln:system-image` (docs/system-image.md). Each task boots the image's
//! kernel and Kiln's initramfs on a qcow2 overlay of the cached base disk;
//! the task arrives over fw_cfg, its output and exit status leave over
//! virtio-serial ports, its output files as a tar stream on another port.
//! No NIC unless the task may use the network. KVM is used only when a probe
//! boot of the image under KVM proved it works (nested KVM may start and
//! then fail); TCG otherwise.

pub mod build;
mod child;
mod cmdline;
pub mod image;
pub mod initramfs;
mod output;
mod run;
pub mod store;

use super::spec::TaskSpec;
use super::{AgentSide, Backend, BackendError, RunOutcome, TaskParams, QEMU, SYSTEM_IMAGE};
use crate::supervisor::logfile::LogWriter;
use crate::supervisor::task_dir::TaskDir;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the shim needs to boot a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuTask {
    /// `qemu-system-<arch>`.
    pub binary: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Why not KVM, when TCG (logged at the task's start).
    pub accel_reason: Option<String>,
    /// The image in the QEMU store: base disk, kernel, initrd.
    pub base: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub smp: u32,
    pub tmp_size: u64,
}

/// Where the agent whose data directory is `data_dir` keeps its base images.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("qemu-images")
}

/// The emulator for a Debian architecture.
pub fn binary_for(debian_arch: &str) -> Option<&'static str> {
    Some(match debian_arch {
        "amd64" => "qemu-system-x86_64",
        "i386" => "qemu-system-i386",
        "arm64" => "qemu-system-aarch64",
        "armhf" | "armel" => "qemu-system-arm",
        "ppc64el" => "qemu-system-ppc64",
        "s390x" => "qemu-system-s390x",
        "riscv64" => "qemu-system-riscv64",
        _ => return None,
    })
}

/// The host's own emulator.
pub fn host_binary() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "qemu-system-aarch64",
        "riscv64" => "qemu-system-riscv64",
        "s390x" => "qemu-system-s390x",
        "powerpc64" => "qemu-system-ppc64",
        _ => "qemu-system-x86_64",
    }
}

/// The accelerator recorded for a stored image by its probe boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    pub accel: String,
    pub reason: Option<String>,
}

pub struct Qemu;

impl Backend for Qemu {
    fn name(&self) -> &'static str {
        QEMU
    }
    fn image_category(&self) -> &'static str {
        SYSTEM_IMAGE
    }
    fn store(&self) -> Option<&'static str> {
        Some(store::STORE_NAME)
    }
    fn probe(&self) -> Result<Vec<(String, Value)>, String> {
        run::probe_emulator(run::ProbeBoot::Run)
    }
    fn probe_quick(&self) -> Result<Vec<(String, Value)>, String> {
        run::probe_emulator(run::ProbeBoot::Skip)
    }
    fn prepare(&self, task: &TaskParams, agent: &AgentSide, dir: &TaskDir) -> Result<(), BackendError> {
        let stored = store::image_dir(&agent.qemu_store, task.artifact_id);
        let manifest = image::Manifest::load(&stored).map_err(|e| BackendError::Spec(e.to_string()))?;
        let binary = binary_for(&manifest.architecture)
            .ok_or_else(|| BackendError::Spec(format!("no emulator for {}", manifest.architecture)))?;
        let choice = store::accel_of(&stored);
        let mut spec = TaskSpec::common(QEMU, task);
        spec.qemu = Some(QemuTask {
            binary: binary.to_owned(),
            accel: choice.accel,
            accel_reason: choice.reason,
            base: stored.join(&manifest.disk),
            kernel: stored.join(&manifest.kernel),
            initrd: stored.join(&manifest.initrd),
            cmdline: manifest.cmdline.clone(),
            smp: if task.cpus > 0.0 { task.cpus.ceil() as u32 } else { 1 },
            tmp_size: task.tmp_size,
        });
        std::fs::create_dir_all(dir.output()).map_err(BackendError::io("create the output directory"))?;
        spec.save(dir)
    }
    fn run(&self, dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
        run::run(dir, log)
    }
    fn cleanup(&self, dir: &TaskDir) -> Vec<String> {
        // QEMU dies with its shim (PR_SET_PDEATHSIG); only files are left.
        let _ = std::fs::remove_file(dir.path.join(run::OVERLAY));
        Vec::new()
    }
}
