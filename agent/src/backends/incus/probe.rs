//! Probing the Incus backends for real (`kiln-agent probe-backend`).
//!
//! incus-lxc: the daemon answers, has a container driver and a storage
//! pool, and a trial container (a busybox image built from the host's
//! static busybox, kept in the `kiln-probe` project) starts and runs `true`.
//! incus-vm: Incus's own verdict on virtual machines; when it cannot run
//! them, the reason it gives (e.g. "vhost_vsock kernel module not loaded").

use super::client::{Client, IncusError};
use super::exec::{exec, StopCheck};
use super::{default_socket, images, instance, store, IncusTask};
use crate::backends::spec::TaskSpec;
use crate::backends::{TaskParams, INCUS_LXC};
use crate::supervisor::logfile::LogWriter;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The project of probe images and instances, shared by the host's agents.
pub const PROBE_PROJECT: &str = "kiln-probe";
/// The static busybox the trial container is made of.
const BUSYBOX: &str = "/bin/busybox";
/// Orders the agents of a host importing the probe image.
const PROBE_LOCK: &str = "/run/kiln-incus-probe.lock";
/// The probe image's pseudo artifact id (real ones start at 1).
const PROBE_IMAGE_ID: i64 = 0;

struct Never;

impl StopCheck for Never {
    fn stop_requested(&self) -> bool {
        false
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start an async runtime: {e}"))?
        .block_on(f)
}

fn why(e: IncusError) -> String {
    e.to_string()
}

async fn drivers(client: &Client) -> Result<Vec<String>, String> {
    let server = client.get("/1.0").await.map_err(why)?;
    let text = server.pointer("/environment/driver").and_then(Value::as_str).unwrap_or("");
    Ok(text.split('|').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect())
}

/// Whether a probe starts a trial container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    Run,
    Skip,
}

pub fn containers(trial: Trial) -> Result<Vec<(String, Value)>, String> {
    block_on(async {
        let client = Client::new(default_socket(), None);
        let drivers = drivers(&client).await?;
        if !drivers.iter().any(|d| d == "lxc") {
            return Err(format!("Incus has no container driver (drivers: {drivers:?})"));
        }
        instance::root_pool(&client).await.map_err(why)?;
        let network = !instance::default_nics(&client).await.map_err(why)?.is_empty();
        if trial == Trial::Run && Path::new(BUSYBOX).exists() {
            trial_container(&client.in_project(Some(PROBE_PROJECT.into()))).await?;
        }
        Ok(vec![(format!("executor:{INCUS_LXC}:network"), Value::Bool(network))])
    })
}

/// A tarball of a minimal root: busybox and the links the trial uses.
fn busybox_tarball(to: &Path) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(std::fs::File::create(to)?);
    for dir in ["bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut busybox = std::fs::File::open(BUSYBOX)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata(&busybox.metadata()?);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    tar.append_data(&mut h, "bin/busybox", &mut busybox)?;
    for link in ["bin/sh", "bin/true", "bin/sleep"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, link, "busybox")?;
    }
    tar.finish()
}

/// Import the probe image unless it is there. Several agents may probe at
/// once: a host-wide lock orders them, and an image another one imported
/// meanwhile is as good as our own.
async fn ensure_probe_image(client: &Client) -> Result<(), String> {
    let has_image = || async { images::list(client).await.map(|l| l.iter().any(|(id, _)| *id == PROBE_IMAGE_ID)) };
    if has_image().await.map_err(why)? {
        return Ok(());
    }
    let lock_file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PROBE_LOCK)
        .map_err(|e| format!("failed to open {PROBE_LOCK}: {e}"))?;
    let _lock =
        tokio::task::spawn_blocking(move || nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|(_, e)| format!("failed to lock {PROBE_LOCK}: {e}"))?;
    if has_image().await.map_err(why)? {
        return Ok(());
    }
    let work = tempfile::tempdir().map_err(|e| format!("failed to create a temporary directory: {e}"))?;
    let tarball = work.path().join("rootfs.tar");
    busybox_tarball(&tarball).map_err(|e| format!("failed to build the probe image: {e}"))?;
    let arch = std::env::consts::ARCH;
    match images::import(client, PROBE_IMAGE_ID, &tarball, arch, "Kiln backend probe (busybox)").await {
        Ok(_) => Ok(()),
        Err(_) if has_image().await.unwrap_or(false) => Ok(()),
        Err(e) => Err(why(e)),
    }
}

async fn trial_container(client: &Client) -> Result<(), String> {
    store::ensure_project(client).await.map_err(why)?;
    ensure_probe_image(client).await?;
    let work = tempfile::tempdir().map_err(|e| format!("failed to create a temporary directory: {e}"))?;
    let task = TaskParams {
        args: vec!["/bin/true".into()],
        env: Vec::new(),
        network: false,
        memory: 64 << 20,
        pids: 64,
        cpus: 0.0,
        disk_quota: None,
        tmp_size: 0,
        timeout_secs: 20,
        notice: None,
        controllers: None,
        artifact_id: PROBE_IMAGE_ID,
        image: work.path().to_owned(),
    };
    let spec = TaskSpec::common(INCUS_LXC, &task);
    let t = IncusTask {
        socket: default_socket(),
        project: PROBE_PROJECT.into(),
        instance: format!("kiln-probe-{}-{:08x}", std::process::id(), rand::random::<u32>()),
        image_alias: super::alias(PROBE_IMAGE_ID),
        keepalive_init: true,
    };
    let log = LogWriter::create(&work.path().join("log.jsonl")).map_err(|e| format!("failed to create a log: {e}"))?;
    let trial = async {
        let pool = instance::root_pool(client).await.map_err(why)?;
        instance::create(client, &instance::config(&spec, &t, work.path(), &pool, Default::default()))
            .await
            .map_err(why)?;
        instance::start(client, &t.instance).await.map_err(why)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        exec(client, &t.instance, &spec, &log, &Never, deadline, Duration::from_secs(1)).await.map_err(why)
    };
    let result = trial.await;
    let removal = instance::destroy(client, &t.instance).await;
    match (result, removal) {
        (Ok((_, Some(0))), Ok(())) => Ok(()),
        (Ok((_, code)), _) => Err(format!("a trial container ran `true` with exit status {code:?}")),
        (Err(e), _) => Err(format!("a trial container failed: {e}")),
    }
}

pub fn virtual_machines() -> Result<Vec<(String, Value)>, String> {
    block_on(async {
        let client = Client::new(default_socket(), None);
        if drivers(&client).await?.iter().any(|d| d == "qemu") {
            return Err("Incus can run virtual machines, but this build of kiln-agent does not run tasks in them yet \
                        (use the qemu backend)"
                .into());
        }
        let warnings = client.get("/1.0/warnings?recursion=1").await.map_err(why)?;
        let reasons: Vec<&str> = warnings
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w.get("type").and_then(Value::as_str) == Some("Instance type not operational"))
            .filter_map(|w| w.get("last_message").and_then(Value::as_str))
            .collect();
        Err(match reasons.as_slice() {
            [] => "Incus reports no virtual-machine driver".to_owned(),
            reasons => format!("Incus cannot run virtual machines here: {}", reasons.join("; ")),
        })
    })
}
