//! The shim's side of an incus-lxc task: create the ephemeral container,
//! start it, make `/kiln/output`, run the command, pull the output, and
//! delete the container whatever happened. The shim is synchronous; this
//! runs on a current-thread tokio runtime of its own (the shim neither forks
//! nor unshares here).

use super::client::{Client, IncusError};
use super::exec::{exec, StopCheck};
use super::{files, instance, IncusTask};
use crate::backends::spec::{TaskSpec, OUTPUT_DIR};
use crate::backends::{BackendError, RunOutcome};
use crate::supervisor::logfile::LogWriter;
use crate::supervisor::shim::STOP_GRACE;
use crate::supervisor::task_dir::{Outcome, TaskDir};
use std::time::{Duration, Instant};

struct ShimStop;

impl StopCheck for ShimStop {
    fn stop_requested(&self) -> bool {
        crate::sandbox::signals_for_shim::stop_requested()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BackendError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BackendError::io("start the shim's async runtime"))
}

fn incus_part(spec: &TaskSpec) -> Result<&IncusTask, BackendError> {
    spec.incus.as_ref().ok_or_else(|| BackendError::Spec("task.json has no incus section".into()))
}

/// Run the task `dir` describes (in the shim).
pub fn run(dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
    crate::sandbox::signals_for_shim::install();
    let spec = TaskSpec::require(dir)?;
    let t = incus_part(&spec)?;
    if let Some(notice) = &spec.notice {
        log.kiln(notice);
    }
    let client = Client::new(&t.socket, Some(t.project.clone()));
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_secs);
    runtime()?.block_on(async {
        let result = run_in_container(&client, &spec, t, dir, log, deadline).await;
        let removal = instance::destroy(&client, &t.instance).await;
        match (result, removal) {
            (Ok(outcome), Ok(())) => Ok(outcome),
            (Ok(_), Err(e)) => Err(BackendError::failed(format!("delete the container {}", t.instance), e)),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(cleanup)) => Err(BackendError::failed(
                "run the task",
                format!("{e}; then failed to delete the container {}: {cleanup}", t.instance),
            )),
        }
    })
}

async fn run_in_container(
    client: &Client,
    spec: &TaskSpec,
    t: &IncusTask,
    dir: &TaskDir,
    log: &LogWriter,
    deadline: Instant,
) -> Result<RunOutcome, BackendError> {
    let failed = |what: &str| {
        let what = what.to_owned();
        move |e: IncusError| BackendError::failed(what, e)
    };
    let pool = instance::root_pool(client).await.map_err(failed("find Incus's storage pool"))?;
    let nics = if spec.network { instance::default_nics(client).await.unwrap_or_default() } else { Default::default() };
    if spec.network && nics.is_empty() {
        log.kiln("network was requested, but Incus has no network configured: running without network");
    }
    let description = instance::config(spec, t, &dir.path, &pool, nics);
    instance::create(client, &description)
        .await
        .map_err(failed(&format!("create the container from {}", t.image_alias)))?;
    if ShimStop.stop_requested() {
        log.kiln("stopping the task: it was aborted");
        return Ok(RunOutcome::exited(Outcome::Aborted, None));
    }
    instance::start(client, &t.instance).await.map_err(failed("start the container"))?;
    files::push_dir(client, &t.instance, OUTPUT_DIR).await.map_err(failed("create the output directory"))?;
    let (outcome, code) = exec(client, &t.instance, spec, log, &ShimStop, deadline, STOP_GRACE)
        .await
        .map_err(failed("run the command"))?;
    let output = dir.output();
    std::fs::create_dir_all(&output).map_err(BackendError::io("create the output directory"))?;
    // After a stop the container may be gone: what could be pulled is kept.
    let pulled = files::pull_tree(client, &t.instance, OUTPUT_DIR, &output).await;
    if outcome == Outcome::Exited {
        pulled.map_err(failed("pull the output"))?;
    }
    Ok(RunOutcome::exited(outcome, code))
}

/// Delete the container of a task whose shim is gone.
pub fn cleanup(dir: &TaskDir) -> Vec<String> {
    let spec = match TaskSpec::require(dir) {
        Ok(spec) => spec,
        Err(e) => return vec![e.to_string()],
    };
    let Some(t) = spec.incus else { return vec!["task.json has no incus section".into()] };
    let client = Client::new(&t.socket, Some(t.project.clone()));
    match runtime().map(|rt| rt.block_on(instance::destroy(&client, &t.instance))) {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(e)) => vec![format!("failed to delete the container {}: {e}", t.instance)],
        Err(e) => vec![e.to_string()],
    }
}
