//! Following a task from its journal record until the coordinator has its
//! result: ship the log as the shim writes it, pass on an abort, and once
//! the shim's status is there, upload the output and the log and report the
//! result. Every step is recorded in the journal first, so a restarted agent
//! picks up exactly where this one stopped and nothing is done twice.

use super::output;
use super::report::report;
use super::Context;
use crate::cgroup;
use crate::image_cache::ImageLease;
use crate::supervisor::journal::TaskRecord;
use crate::supervisor::logfile::LogCursor;
use crate::supervisor::task_dir::{Outcome, ShimStatus, TaskDir};
use kiln_shared::work::LogLine;
use kiln_shared::WorkResult;
use nix::sys::signal::Signal;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// An infrastructure error as a result.
pub fn error_result(code: &str, message: &str) -> (WorkResult, Map<String, Value>) {
    (WorkResult::Error, obj(json!({"errors": [{"code": code, "message": message}]})))
}

pub async fn follow(ctx: &Context, mut record: TaskRecord, abort: &AtomicBool, lease: Option<ImageLease>) {
    let dir = TaskDir::new(&record.task_dir);
    let mut shipper = LogShipper::new(record.acked_seq);
    let mut stop_sent = false;
    while record.result.is_none() {
        shipper.ship(ctx, &dir, &mut record).await;
        let status = dir.read_status().ok().flatten();
        if let Some(status) = status {
            shipper.flush(ctx, &dir, &mut record).await;
            let result = finish(ctx, &dir, &mut record, status).await;
            record.result = Some(result);
            save(ctx, &record);
            break;
        }
        let alive = record.shim.is_some_and(|s| s.is_alive());
        if abort.load(Ordering::SeqCst) && !stop_sent {
            if let Some(shim) = record.shim {
                shim.signal(Signal::SIGTERM);
            }
            stop_sent = true;
        }
        if !alive {
            // Gone without a status (killed, or the host rebooted): the
            // attempt is lost; whatever it left running is stopped.
            if dir.read_status().ok().flatten().is_some() {
                continue;
            }
            let name = crate::supervisor::shim::cgroup_name(&dir.path);
            let layout = cgroup::detect(Path::new("/proc"), Path::new("/sys"));
            if let Ok(cg) = cgroup::TaskCgroup::open(&layout, &name) {
                let _ = cg.remove();
            }
            // The backend removes what the shim owned (an Incus container).
            if let Some(backend) = crate::backends::by_name(&record.backend) {
                let lost = dir.clone();
                let cleanup = tokio::task::spawn_blocking(move || backend.cleanup(&lost));
                for problem in cleanup.await.unwrap_or_default() {
                    tracing::warn!(id = record.id, %problem, "cleaning up after a lost shim");
                }
            }
            shipper.flush(ctx, &dir, &mut record).await;
            tracing::error!(id = record.id, attempt = record.attempt, "the task's shim is gone without a status");
            record.result = Some(error_result("shim-lost", "the task's supervisor ended without recording a status"));
            save(ctx, &record);
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    drop(lease);
    if let Some((result, output_data)) = record.result.clone() {
        report(ctx, record.id, record.attempt, result, output_data).await;
    }
    if let Err(e) = ctx.journal.remove(record.id, record.attempt) {
        tracing::warn!(id = record.id, error = %e, "failed to remove a journal record");
    }
    if let Err(e) = std::fs::remove_dir_all(&dir.path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.path.display(), error = %e, "failed to remove a finished task's directory");
        }
    }
}

fn save(ctx: &Context, record: &TaskRecord) {
    if let Err(e) = ctx.journal.write(record) {
        tracing::error!(id = record.id, error = %e, "failed to write the journal: a restart now may repeat a step");
    }
}

/// Upload what the task left (each upload recorded before the next) and
/// turn its status into a result.
async fn finish(
    ctx: &Context,
    dir: &TaskDir,
    record: &mut TaskRecord,
    status: ShimStatus,
) -> (WorkResult, Map<String, Value>) {
    if record.debian.is_some() {
        return finish_debian(ctx, dir, record, status).await;
    }
    if !record.output_uploaded {
        let files = match output::collect_files(&dir.output()) {
            Ok(files) => files,
            Err(e) => return error_result("agent-io", &format!("failed to read the output directory: {e}")),
        };
        match output::upload(&ctx.client, "kiln:task-output", Map::new(), record.id, &files).await {
            Ok(id) => record.artifacts.extend(id),
            Err(e) => return error_result("artifact-upload-failed", &e.to_string()),
        }
        record.output_uploaded = true;
        save(ctx, record);
    }
    if let Err(e) = upload_log(ctx, dir, record).await {
        return error_result("artifact-upload-failed", &e.to_string());
    }
    let mut out = obj(json!({
        "artifacts": record.artifacts,
        "errors": [],
        "resolved_backend": record.backend,
        "exit_code": status.exit_code,
        "oom_killed": status.oom_killed,
        "timed_out": status.outcome == Outcome::TimedOut,
        "memory_peak": status.memory_peak,
        "provenance": {"environment_sha256": record.environment_sha256, "backend": record.backend},
    }));
    let result = match status.outcome {
        Outcome::SetupFailed => {
            out.insert("errors".into(), json!([{"code": "sandbox-setup-failed", "message": status.setup_error}]));
            WorkResult::Error
        }
        Outcome::Exited if status.exit_code == Some(0) && !status.oom_killed => WorkResult::Success,
        _ => WorkResult::Failure,
    };
    (result, out)
}

/// Upload the task's log as a `kiln:task-log` artifact, once.
async fn upload_log(ctx: &Context, dir: &TaskDir, record: &mut TaskRecord) -> Result<(), output::UploadError> {
    if record.log_uploaded {
        return Ok(());
    }
    let log = vec![("log.jsonl".to_owned(), dir.log())];
    let data = obj(json!({"attempt": record.attempt}));
    record.artifacts.extend(output::upload(&ctx.client, "kiln:task-log", data, record.id, &log).await?);
    record.log_uploaded = true;
    save(ctx, record);
    Ok(())
}

/// A Debian task: its log, then the artifacts its tool made.
async fn finish_debian(
    ctx: &Context,
    dir: &TaskDir,
    record: &mut TaskRecord,
    status: ShimStatus,
) -> (WorkResult, Map<String, Value>) {
    if let Err(e) = upload_log(ctx, dir, record).await {
        return error_result("artifact-upload-failed", &e.to_string());
    }
    let (result, mut out) = crate::debian::finish(ctx, dir, record, &status).await;
    out.insert("artifacts".into(), json!(record.artifacts));
    (result, out)
}

/// Ships `log.jsonl` after the acknowledged seq (DESIGN §6a).
struct LogShipper {
    cursor: LogCursor,
    unacked: Vec<LogLine>,
    acked: u64,
}

impl LogShipper {
    fn new(acked: u64) -> Self {
        LogShipper { cursor: LogCursor::default(), unacked: Vec::new(), acked }
    }

    async fn ship(&mut self, ctx: &Context, dir: &TaskDir, record: &mut TaskRecord) {
        match self.cursor.read_new(&dir.log()) {
            Ok(lines) => self.unacked.extend(lines.into_iter().filter(|l| l.seq > self.acked)),
            Err(e) => tracing::warn!(error = %e, "failed to read the task log"),
        }
        while !self.unacked.is_empty() {
            let batch: Vec<LogLine> = self.unacked.iter().take(1000).cloned().collect();
            match ctx.client.append_log(record.id, record.attempt, &batch).await {
                Ok(ack) => {
                    self.acked = ack.acknowledged_seq;
                    self.unacked.retain(|l| l.seq > ack.acknowledged_seq);
                    if record.acked_seq != self.acked {
                        record.acked_seq = self.acked;
                        save(ctx, record);
                    }
                }
                Err(e) => {
                    tracing::warn!(id = record.id, error = %e, "waiting for the coordinator to take the log; it stays on disk meanwhile");
                    return;
                }
            }
        }
    }

    /// Ship until everything written is acknowledged; waits out outages.
    async fn flush(&mut self, ctx: &Context, dir: &TaskDir, record: &mut TaskRecord) {
        loop {
            self.ship(ctx, dir, record).await;
            if self.unacked.is_empty() {
                return;
            }
            tokio::time::sleep(crate::session::jitter(Duration::from_secs(1))).await;
        }
    }
}
