//! Running one assigned work request: `noop` completes at once; `command`
//! gets its image from the cache, has its sandbox described as a spec in a
//! fresh task directory, and runs under a shim while its log is shipped;
//! when the shim's status appears, the output and log become artifacts and
//! the result is reported.

use super::output;
use super::Context;
use crate::sandbox::spec::{self, SandboxParams};
use crate::supervisor::logfile::LogCursor;
use crate::supervisor::task_dir::{write_atomic, Outcome, ShimStatus, TaskDir};
use kiln_shared::client::ClientError;
use kiln_shared::work::{Completion, LogLine, WorkRequest};
use kiln_shared::WorkResult;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An infrastructure failure: the task ends as `error` with this code.
#[derive(Debug)]
pub struct TaskError {
    pub code: &'static str,
    pub message: String,
}

impl TaskError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        TaskError { code, message: message.into() }
    }
}

/// Run `wr` to completion; `abort` is set when the coordinator aborts it.
pub async fn run(ctx: Arc<Context>, wr: WorkRequest, abort: Arc<AtomicBool>) {
    let (id, attempt) = (wr.id, wr.attempt);
    let outcome = match wr.task_name.as_str() {
        "noop" => Ok((WorkResult::Success, Map::new())),
        "command" => command(&ctx, &wr, &abort).await,
        other => Err(TaskError::new("unsupported-task", format!("this agent does not run {other:?} tasks"))),
    };
    let (result, output_data) = match outcome {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(id, attempt, code = e.code, message = %e.message, "task failed to run");
            (WorkResult::Error, obj(json!({"errors": [{"code": e.code, "message": e.message}]})))
        }
    };
    if abort.load(Ordering::SeqCst) {
        tracing::info!(id, attempt, "task stopped after an abort; not reporting a result");
        return;
    }
    report(&ctx, id, attempt, result, output_data).await;
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Report a result, retrying while the coordinator is unreachable.
async fn report(ctx: &Context, id: i64, attempt: u32, result: WorkResult, output_data: Map<String, Value>) {
    let completion = Completion { result, attempt: Some(attempt), output_data: Some(output_data) };
    let mut delay = Duration::from_secs(1);
    loop {
        match ctx.client.complete(id, &completion).await {
            Ok(_) => {
                tracing::info!(id, attempt, %result, "result reported");
                return;
            }
            Err(e @ ClientError::Api { .. }) => {
                // 409: aborted, stale or already completed. Nothing to retry.
                tracing::warn!(id, attempt, error = %e, "result refused");
                return;
            }
            Err(e) => {
                tracing::warn!(id, attempt, error = %e, retry_in = ?delay, "waiting for the coordinator to report a result");
                tokio::time::sleep(crate::session::jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The backend this agent uses for `task_data`: the simplest acceptable one
/// that it has available.
fn choose_backend(ctx: &Context, data: &Map<String, Value>) -> Result<&'static str, TaskError> {
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
    acceptable.iter().copied().find(|b| ctx.backend_available(b)).ok_or_else(|| {
        TaskError::new("backend-unavailable", format!("none of {acceptable:?} is available on this agent"))
    })
}

async fn command(
    ctx: &Context,
    wr: &WorkRequest,
    abort: &AtomicBool,
) -> Result<(WorkResult, Map<String, Value>), TaskError> {
    let data = &wr.task_data;
    let backend = choose_backend(ctx, data)?;
    if backend != "unshare" {
        return Err(TaskError::new(
            "backend-unavailable",
            format!("backend {backend} is not implemented by this agent yet"),
        ));
    }
    let env_id = data
        .get("environment")
        .and_then(Value::as_i64)
        .ok_or_else(|| TaskError::new("invalid-task", "no environment"))?;
    let lease = ctx.cache.acquire(&ctx.client, env_id).await.map_err(|e| TaskError::new(e.code(), e.to_string()))?;
    let dir = TaskDir::new(ctx.config.data_dir.join("tasks").join(format!("{}-{}", wr.id, wr.attempt)));
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| TaskError::new("agent-io", format!("failed to {what}: {e}"))
    };
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).map_err(io("clear an old task directory"))?;
    }
    std::fs::create_dir_all(&dir.path).map_err(io("create the task directory"))?;
    let wants_network = data.get("network").and_then(Value::as_bool).unwrap_or(false);
    let network = wants_network && ctx.config.allow_network;
    let limits = &ctx.config.limits;
    let params = SandboxParams {
        lower: lease.rootfs.clone(),
        rootfs: dir.rootfs(),
        output: dir.output(),
        args: data
            .get("command")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
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
        notice: (wants_network && !network)
            .then(|| "network was requested, but this agent does not allow it: running without network".to_owned()),
    };
    let spec = spec::build(&params).map_err(|e| TaskError::new("sandbox-spec", e.to_string()))?;
    spec::save(&spec, &dir.path).map_err(|e| TaskError::new("sandbox-spec", e.to_string()))?;
    let task = json!({"version": 1, "id": wr.id, "attempt": wr.attempt, "backend": backend, "environment": env_id, "environment_sha256": lease.sha256});
    write_atomic(&dir.task(), task.to_string().as_bytes()).map_err(io("write task.json"))?;

    let shim_err = std::fs::File::create(dir.path.join("shim.stderr")).map_err(io("create shim.stderr"))?;
    let mut shim = tokio::process::Command::new(&ctx.agent_exe)
        .arg("shim")
        .arg("--task-dir")
        .arg(&dir.path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(shim_err)
        .spawn()
        .map_err(io("start the task's shim"))?;
    tracing::info!(id = wr.id, attempt = wr.attempt, shim = shim.id(), "task started");
    let mut shipper = LogShipper { cursor: LogCursor::default(), unacked: Vec::new(), id: wr.id, attempt: wr.attempt };
    let mut stop_sent = false;
    let status = loop {
        shipper.ship(ctx, &dir).await;
        if let Some(status) = dir.read_status().map_err(io("read status.json"))? {
            let _ = shim.wait().await;
            break status;
        }
        if abort.load(Ordering::SeqCst) && !stop_sent {
            if let Some(pid) = shim.id() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
            stop_sent = true;
        }
        if let Ok(Some(exit)) = shim.try_wait() {
            if dir.read_status().map_err(io("read status.json"))?.is_none() {
                let stderr = std::fs::read_to_string(dir.path.join("shim.stderr")).unwrap_or_default();
                return Err(TaskError::new(
                    "shim-failed",
                    format!("the task's shim ended ({exit}) without a status: {}", stderr.trim()),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(lease);
    shipper.flush(ctx, &dir).await;
    finish(ctx, wr, &dir, status, backend).await
}

async fn finish(
    ctx: &Context,
    wr: &WorkRequest,
    dir: &TaskDir,
    status: ShimStatus,
    backend: &str,
) -> Result<(WorkResult, Map<String, Value>), TaskError> {
    let task: Value = std::fs::read(dir.task()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut artifacts = Vec::new();
    let upload = |e: output::UploadError| TaskError::new("artifact-upload-failed", e.to_string());
    let files = output::collect_files(&dir.output()).map_err(|e| TaskError::new("agent-io", e.to_string()))?;
    if let Some(id) =
        output::upload(&ctx.client, "kiln:task-output", Map::new(), wr.id, &files).await.map_err(upload)?
    {
        artifacts.push(id);
    }
    let log = vec![("log.jsonl".to_owned(), dir.log())];
    if let Some(id) = output::upload(&ctx.client, "kiln:task-log", obj(json!({"attempt": wr.attempt})), wr.id, &log)
        .await
        .map_err(upload)?
    {
        artifacts.push(id);
    }
    let mut out = obj(json!({
        "artifacts": artifacts,
        "errors": [],
        "resolved_backend": backend,
        "exit_code": status.exit_code,
        "oom_killed": status.oom_killed,
        "timed_out": status.outcome == Outcome::TimedOut,
        "memory_peak": status.memory_peak,
        "provenance": {"environment_sha256": task.get("environment_sha256"), "backend": backend},
    }));
    let result = match status.outcome {
        Outcome::SetupFailed => {
            out.insert("errors".into(), json!([{"code": "sandbox-setup-failed", "message": status.setup_error}]));
            WorkResult::Error
        }
        Outcome::Exited if status.exit_code == Some(0) && !status.oom_killed => WorkResult::Success,
        _ => WorkResult::Failure,
    };
    if let Err(e) = std::fs::remove_dir_all(&dir.path) {
        tracing::warn!(path = %dir.path.display(), error = %e, "failed to remove a finished task's directory");
    }
    Ok((result, out))
}

/// Ships `log.jsonl` to the coordinator as it grows (DESIGN §6a).
struct LogShipper {
    cursor: LogCursor,
    unacked: Vec<LogLine>,
    id: i64,
    attempt: u32,
}

impl LogShipper {
    async fn ship(&mut self, ctx: &Context, dir: &TaskDir) {
        match self.cursor.read_new(&dir.log()) {
            Ok(lines) => self.unacked.extend(lines),
            Err(e) => tracing::warn!(error = %e, "failed to read the task log"),
        }
        if self.unacked.is_empty() {
            return;
        }
        let batch: Vec<LogLine> = self.unacked.iter().take(1000).cloned().collect();
        match ctx.client.append_log(self.id, self.attempt, &batch).await {
            Ok(ack) => self.unacked.retain(|l| l.seq > ack.acknowledged_seq),
            Err(e) => tracing::warn!(id = self.id, error = %e, "log shipping delayed"),
        }
    }

    /// Ship until everything written is acknowledged (bounded by a minute).
    async fn flush(&mut self, ctx: &Context, dir: &TaskDir) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            self.ship(ctx, dir).await;
            if self.unacked.is_empty() || tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
