//! Starting one assigned work request: `noop` completes at once; `command`
//! picks its backend, gets its image from the cache (imported into the
//! backend's store), has the backend describe it in a fresh task directory,
//! is recorded in the journal, and runs under a detached shim that `follow`
//! then watches.

use super::follow::{error_result, follow};
use super::report::report;
use super::Context;
use crate::backends::{self, AgentSide, Backend, TaskParams};
use crate::image_cache::{ImageLease, Want};
use crate::supervisor::journal::TaskRecord;
use crate::supervisor::process::ProcessRef;
use crate::supervisor::task_dir::TaskDir;
use kiln_shared::work::WorkRequest;
use kiln_shared::WorkResult;
use serde_json::{Map, Value};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// An infrastructure failure before the task could start.
#[derive(Debug)]
pub struct TaskError {
    pub code: &'static str,
    pub message: String,
}

impl TaskError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        TaskError { code, message: message.into() }
    }
}

/// Run `wr` until the coordinator has its result.
pub async fn run(ctx: Arc<Context>, wr: WorkRequest, abort: Arc<AtomicBool>) {
    match wr.task_name.as_str() {
        "noop" => report(&ctx, wr.id, wr.attempt, WorkResult::Success, Map::new()).await,
        "command" => match start(&ctx, &wr).await {
            Ok((record, lease)) => follow(&ctx, record, &abort, Some(lease)).await,
            Err(e) => {
                tracing::error!(id = wr.id, attempt = wr.attempt, code = e.code, message = %e.message, "task failed to start");
                let _ = ctx.journal.remove(wr.id, wr.attempt);
                let (result, out) = error_result(e.code, &e.message);
                report(&ctx, wr.id, wr.attempt, result, out).await;
            }
        },
        name if ctx.config.role == crate::config::Role::Worker && crate::debian::is_debian_task(name) => {
            match crate::debian::start(&ctx, &wr).await {
                Ok((record, lease)) => follow(&ctx, record, &abort, lease).await,
                Err(e) => {
                    tracing::error!(id = wr.id, attempt = wr.attempt, code = e.code, message = %e.message, "Debian task failed to start");
                    let _ = ctx.journal.remove(wr.id, wr.attempt);
                    let (result, out) = error_result(e.code, &e.message);
                    report(&ctx, wr.id, wr.attempt, result, out).await;
                }
            }
        }
        name if ctx.config.role == crate::config::Role::Signing && crate::signing::is_signing_task(name) => {
            let (result, out) = match crate::signing::run(&ctx.config.data_dir, &ctx.client, &wr).await {
                Ok(out) => (WorkResult::Success, out),
                Err(e) => error_result(e.code(), &e.to_string()),
            };
            report(&ctx, wr.id, wr.attempt, result, out).await;
        }
        other => {
            let (result, out) = error_result("unsupported-task", &format!("this agent does not run {other:?} tasks"));
            report(&ctx, wr.id, wr.attempt, result, out).await;
        }
    }
}

/// The acceptable backends for `task_data` that this agent has available,
/// simplest first (DESIGN §5).
fn available_backends(ctx: &Context, data: &Map<String, Value>) -> Result<Vec<&'static str>, TaskError> {
    let asked = data.get("backend").and_then(Value::as_str).unwrap_or("auto");
    let acceptable: &[&'static str] = match (asked, data.get("needs").and_then(Value::as_str)) {
        ("auto", Some("container")) => &["unshare", "incus-lxc"],
        ("auto", Some("machine")) => &["incus-vm", "qemu"],
        ("auto", _) => &["unshare", "incus-lxc", "incus-vm", "qemu"],
        ("unshare", _) => &["unshare"],
        ("incus-lxc", _) => &["incus-lxc"],
        ("incus-vm", _) => &["incus-vm"],
        ("qemu", _) => &["qemu"],
        (other, _) => return Err(TaskError::new("backend-unavailable", format!("unknown backend {other:?}"))),
    };
    let available: Vec<&'static str> = acceptable.iter().copied().filter(|b| ctx.backend_available(b)).collect();
    if available.is_empty() {
        return Err(TaskError::new(
            "backend-unavailable",
            format!("none of {acceptable:?} is available on this agent"),
        ));
    }
    Ok(available)
}

/// The backend this agent uses: the simplest acceptable one it has
/// available that runs the environment's kind of image (a system tarball
/// or a bootable system image).
async fn choose_backend(
    ctx: &Context,
    data: &Map<String, Value>,
    env_id: i64,
) -> Result<&'static dyn Backend, TaskError> {
    let candidates: Vec<&'static dyn Backend> =
        available_backends(ctx, data)?.into_iter().filter_map(backends::by_name).collect();
    let first = *candidates.first().ok_or_else(|| TaskError::new("backend-unavailable", "no known backend"))?;
    if candidates.iter().all(|b| b.image_category() == first.image_category()) {
        return Ok(first);
    }
    let artifact =
        ctx.client.artifact(env_id).await.map_err(|e| {
            TaskError::new("image-download-failed", format!("failed to look up environment {env_id}: {e}"))
        })?;
    candidates.into_iter().find(|b| b.image_category() == artifact.category).ok_or_else(|| {
        TaskError::new("backend-unavailable", format!("no available backend runs a {} environment", artifact.category))
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn start(ctx: &Context, wr: &WorkRequest) -> Result<(TaskRecord, ImageLease), TaskError> {
    let data = &wr.task_data;
    let env_id = data
        .get("environment")
        .and_then(Value::as_i64)
        .ok_or_else(|| TaskError::new("invalid-task", "no environment"))?;
    let chosen = choose_backend(ctx, data, env_id).await?;
    let backend = chosen.name();
    let want = Want::new(chosen.image_category(), chosen.store());
    let lease =
        ctx.cache.acquire_for(&ctx.client, env_id, want).await.map_err(|e| TaskError::new(e.code(), e.to_string()))?;
    let dir = TaskDir::new(ctx.config.data_dir.join("tasks").join(format!("{}-{}", wr.id, wr.attempt)));
    let io = |what: &'static str| move |e: std::io::Error| TaskError::new("agent-io", format!("failed to {what}: {e}"));
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).map_err(io("clear an old task directory"))?;
    }
    std::fs::create_dir_all(&dir.path).map_err(io("create the task directory"))?;
    let wants_network = data.get("network").and_then(Value::as_bool).unwrap_or(false);
    let network = wants_network && ctx.config.allow_network;
    let limits = &ctx.config.limits;
    let params = TaskParams {
        artifact_id: env_id,
        image: lease.rootfs.clone(),
        args: strings(data.get("command")),
        env: data
            .get("env")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default(),
        network,
        memory: limits.memory.max(data.get("min_memory").and_then(Value::as_u64).unwrap_or(0)),
        pids: limits.pids,
        cpus: limits.cpus,
        disk_quota: ctx.disk_quota.then(|| limits.disk.max(data.get("min_disk").and_then(Value::as_u64).unwrap_or(0))),
        tmp_size: limits.tmp,
        timeout_secs: data.get("timeout").and_then(Value::as_u64).unwrap_or(ctx.config.default_timeout),
        controllers: Some(ctx.enforced_controllers()),
        notice: (wants_network && !network)
            .then(|| "network was requested, but this agent does not allow it: running without network".to_owned()),
    };
    if let (Some(quota), Some(pool), backends::UNSHARE) = (params.disk_quota, &ctx.layers, backend) {
        if pool.take(quota, &dir.path.join("layer.img")) {
            super::refill_layers(ctx);
        }
    }
    chosen
        .prepare(&params, &AgentSide::new(&ctx.config.data_dir), &dir)
        .map_err(|e| TaskError::new("sandbox-spec", e.to_string()))?;
    let mut record = TaskRecord::new(wr.id, wr.attempt, dir.path.clone(), backend, Some(lease.sha256.clone()));
    record.environment = Some(env_id);
    ctx.journal.write(&record).map_err(io("write the journal"))?;
    record.shim = Some(spawn_shim(ctx, &dir).await?);
    ctx.journal.write(&record).map_err(io("write the journal"))?;
    tracing::info!(id = wr.id, attempt = wr.attempt, shim = ?record.shim, "task started");
    Ok((record, lease))
}

/// Is the agent a systemd service? (systemd sets INVOCATION_ID for units.)
fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() && std::path::Path::new("/run/systemd/system").exists()
}

/// `kiln-agent shim --task-dir DIR`; under systemd wrapped in its own
/// transient scope, so stopping or restarting the agent's unit neither kills
/// the shim (it is not in the unit's cgroup) nor takes away the mount
/// namespace it started in (a scope keeps the caller's), and the shim may
/// create the task's cgroups below its own (Delegate=yes).
fn shim_command(ctx: &Context, dir: &TaskDir) -> tokio::process::Command {
    let mut cmd = if under_systemd() {
        let unit = format!("kiln-task-{}", crate::supervisor::shim::cgroup_name(&dir.path));
        let mut c = tokio::process::Command::new("systemd-run");
        c.args(["--scope", "--quiet", "--collect", "--property=Delegate=yes", "--unit", &unit, "--"])
            .arg(&ctx.agent_exe);
        c
    } else {
        tokio::process::Command::new(&ctx.agent_exe)
    };
    cmd.arg("shim").arg("--task-dir").arg(&dir.path);
    cmd
}

/// Start `kiln-agent shim`, which detaches and prints the shim's pid.
pub(crate) async fn spawn_shim(ctx: &Context, dir: &TaskDir) -> Result<ProcessRef, TaskError> {
    let stderr = std::fs::File::create(dir.path.join("shim.stderr"))
        .map_err(|e| TaskError::new("agent-io", format!("failed to create shim.stderr: {e}")))?;
    let mut launcher = shim_command(ctx, dir);
    let mut launcher = launcher
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| TaskError::new("shim-failed", format!("failed to start the task's shim: {e}")))?;
    // Read the pid line only: the pipe's other end may live on in the shim.
    let mut line = String::new();
    if let Some(stdout) = launcher.stdout.take() {
        let mut reader = tokio::io::BufReader::new(stdout);
        let _ = tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await;
    }
    let status = launcher
        .wait()
        .await
        .map_err(|e| TaskError::new("shim-failed", format!("failed to wait for the shim's launcher: {e}")))?;
    let pid: i32 = line
        .trim()
        .parse()
        .map_err(|_| TaskError::new("shim-failed", format!("the shim did not report its pid ({status})")))?;
    ProcessRef::of(pid)
        .or_else(|| {
            // It may already be done: its status will tell.
            dir.read_status().ok().flatten().map(|_| ProcessRef { pid, start_time: 0 })
        })
        .ok_or_else(|| TaskError::new("shim-failed", format!("the shim (pid {pid}) vanished without a status")))
}
