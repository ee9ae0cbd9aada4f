//! The QEMU base images as one of the cache's stores: an image entering it
//! is linked (no copy) from the cache into `<data-dir>/qemu-images/<id>`,
//! checked, and booted once under KVM when the host offers KVM: only a boot
//! that runs a command proves KVM works (nested KVM can create a VM and then
//! fail inside it), and the verdict is kept in `accel.json` for its tasks.

use super::image::Manifest;
use super::{AccelChoice, QemuTask};
use crate::backends::spec::TaskSpec;
use crate::backends::TaskParams;
use crate::image_cache::stores::{
    reconcile_image_dirs, remove_image_dir, ImageStore, StoreError, StoreFuture, StoreImage,
};
use crate::supervisor::logfile::LogWriter;
use crate::supervisor::task_dir::Outcome;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const STORE_NAME: &str = "qemu";
const ACCEL_FILE: &str = "accel.json";
const PROBE_TIMEOUT_SECS: u64 = 60;
/// A kernel under working KVM prints its first console line within
/// milliseconds; nested KVM here spins ~80 s before failing, silent.
const SIGN_OF_LIFE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn image_dir(store: &Path, artifact_id: i64) -> PathBuf {
    store.join(artifact_id.to_string())
}

/// The accelerator a stored image boots with.
pub fn accel_of(image_dir: &Path) -> AccelChoice {
    std::fs::read(image_dir.join(ACCEL_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| {
        AccelChoice { accel: "tcg".into(), reason: Some("no probe boot under KVM is recorded for this image".into()) }
    })
}

/// Boot `image_dir` once under KVM running `true` (in
/// `kiln-agent probe-backend qemu --image DIR`); the verdict.
pub fn probe_accel(image_dir: &Path) -> AccelChoice {
    let tcg = |reason: String| AccelChoice { accel: "tcg".into(), reason: Some(reason) };
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return tcg(format!("/dev/kvm is not usable: {e}"));
    }
    let manifest = match Manifest::load(image_dir) {
        Ok(m) => m,
        Err(e) => return tcg(e.to_string()),
    };
    let Ok(work) = tempfile::tempdir() else { return tcg("no temporary directory for a probe boot".into()) };
    let task = TaskParams {
        args: vec!["true".into()],
        env: Vec::new(),
        network: false,
        memory: 256 << 20,
        pids: 64,
        cpus: 0.0,
        disk_quota: None,
        tmp_size: 1 << 20,
        timeout_secs: PROBE_TIMEOUT_SECS,
        notice: None,
        controllers: None,
        artifact_id: 0,
        image: image_dir.to_owned(),
    };
    let spec = TaskSpec::common(super::super::QEMU, &task);
    let q = QemuTask {
        binary: super::binary_for(&manifest.architecture).unwrap_or(super::host_binary()).to_owned(),
        accel: "kvm".into(),
        accel_reason: None,
        base: image_dir.join(&manifest.disk),
        kernel: image_dir.join(&manifest.kernel),
        initrd: image_dir.join(&manifest.initrd),
        // Verbose and early, so the first sign of life comes at once.
        cmdline: format!("{} loglevel=7 earlyprintk=serial", manifest.cmdline),
        smp: 1,
        tmp_size: 1 << 20,
    };
    let Ok(log) = LogWriter::create(&work.path().join("log.jsonl")) else {
        return tcg("cannot write a probe log".into());
    };
    let started = std::time::Instant::now();
    let console = work.path().join("console.log");
    let silent =
        || started.elapsed() > SIGN_OF_LIFE && std::fs::metadata(&console).map(|m| m.len() == 0).unwrap_or(true);
    match super::run::boot(&spec, &q, work.path(), &log, &silent) {
        Ok(b) if b.outcome.outcome == Outcome::Exited && b.outcome.exit_code == Some(0) => {
            AccelChoice { accel: "kvm".into(), reason: None }
        }
        Ok(b) if b.accel_failed => {
            tcg(format!("a probe boot under KVM failed ({}): using TCG", b.outcome.setup_error.unwrap_or_default()))
        }
        Ok(b) if b.outcome.outcome == Outcome::Aborted => {
            tcg(format!("a probe boot under KVM showed no sign of life within {} s: using TCG", SIGN_OF_LIFE.as_secs()))
        }
        Ok(b) => tcg(format!("a probe boot under KVM did not run its command ({:?}): using TCG", b.outcome)),
        Err(e) => tcg(format!("a probe boot under KVM failed: {e}")),
    }
}

pub struct QemuStore {
    dir: PathBuf,
    agent_exe: PathBuf,
}

impl QemuStore {
    pub fn new(dir: PathBuf, agent_exe: PathBuf) -> Self {
        QemuStore { dir, agent_exe }
    }

    async fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        let id = image.artifact_id;
        let fail =
            |what: &str, e: &dyn std::fmt::Display| StoreError::new(STORE_NAME, format!("{what} of image {id}"), e);
        let target = image_dir(&self.dir, id);
        let partial = self.dir.join(format!(".import-{id}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&partial).map_err(|e| fail("create the store directory", &e))?;
        for (name, path) in &image.files {
            let Some(base) = Path::new(name).file_name() else { continue };
            let to = partial.join(base);
            if std::fs::hard_link(path, &to).is_err() {
                std::fs::copy(path, &to).map_err(|e| fail(&format!("copy {name}"), &e))?;
            }
        }
        if let Err(e) = Manifest::load(&partial) {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(fail("check", &e));
        }
        let output = tokio::process::Command::new(&self.agent_exe)
            .args(["probe-backend", "qemu", "--image"])
            .arg(&partial)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| fail("probe-boot", &e))?;
        let choice: AccelChoice = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| AccelChoice {
            accel: "tcg".into(),
            reason: Some(format!("the probe boot said nothing usable: {}", String::from_utf8_lossy(&output.stderr))),
        });
        let text = serde_json::to_vec(&choice).map_err(|e| fail("record the accelerator", &e))?;
        std::fs::write(partial.join(ACCEL_FILE), text).map_err(|e| fail("record the accelerator", &e))?;
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target).map_err(|e| fail("publish", &e))?;
        tracing::info!(artifact_id = id, accel = %choice.accel, reason = ?choice.reason, "imported into the QEMU store");
        Ok(())
    }
}

impl ImageStore for QemuStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }
    fn category(&self) -> &'static str {
        crate::backends::SYSTEM_IMAGE
    }
    fn import<'a>(&'a self, image: &'a StoreImage) -> StoreFuture<'a, ()> {
        Box::pin(self.import_image(image))
    }
    fn remove(&self, artifact_id: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move { remove_image_dir(STORE_NAME, &self.dir, artifact_id) })
    }
    fn reconcile<'a>(&'a self, keep: &'a BTreeSet<i64>) -> StoreFuture<'a, BTreeSet<i64>> {
        Box::pin(async move { Ok(reconcile_image_dirs(STORE_NAME, &self.dir, keep, |d| Manifest::load(d).is_ok())) })
    }
}
