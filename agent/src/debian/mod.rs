//! Debian worker tasks (issue: Debian tasks; DESIGN §2, §5): `mmdebstrap`,
//! `sbuild`, `lintian`, `autopkgtest` and `extract_test_restrictions`.
//!
//! A Debian task runs like any other: the daemon fetches its inputs into a
//! task directory, describes the tool's command in `task.json` for the
//! `host-tool` backend, and a detached shim runs it (so it survives agent
//! restarts and streams its log). When the shim is done, [`finish`] reads
//! what the tool left ([`collect`]) and uploads each artifact once,
//! recording every upload in the journal before the next.

pub mod collect;
mod inputs;
pub mod jobs;
pub mod reports;
pub mod sandbox;
pub mod tarballs;
mod tools;

pub use tools::{advertise, TASKS};

use crate::backends::host_tool::{create_scratch_dir, scratch_dir, HostTask, HOST_TOOL};
use crate::backends::spec::{TaskSpec, TASK_SPEC_VERSION};
use crate::daemon::task::TaskError;
use crate::daemon::Context;
use crate::image_cache::{ImageLease, Want};
use crate::supervisor::journal::TaskRecord;
use crate::supervisor::task_dir::{ShimStatus, TaskDir};
use jobs::{Job, Paths};
use kiln_shared::deb822::SourcePackage;
use kiln_shared::work::WorkRequest;
use kiln_shared::WorkResult;
use serde_json::{json, Map, Value};
use std::path::Path;

/// How Debian tasks want their environment: the tarball in the tarball
/// store, never unpacked for them.
pub const ENVIRONMENT: Want =
    Want { category: crate::backends::SYSTEM_TARBALL, store: Some(tarballs::STORE_NAME), unpack: false };

/// Is `name` a Debian task this agent runs?
pub fn is_debian_task(name: &str) -> bool {
    TASKS.iter().any(|(t, _)| *t == name)
}

/// Prepare and start a Debian task under its shim.
pub async fn start(ctx: &Context, wr: &WorkRequest) -> Result<(TaskRecord, Option<ImageLease>), TaskError> {
    let job = Job::parse(&wr.task_name, &wr.task_data).map_err(|m| TaskError::new("invalid-task", m))?;
    if let Some(why) = tools::missing(&wr.task_name) {
        return Err(TaskError::new("tool-unavailable", why));
    }
    let dir = TaskDir::new(ctx.config.data_dir.join("tasks").join(format!("{}-{}", wr.id, wr.attempt)));
    let io = |what: &'static str| move |e: std::io::Error| TaskError::new("agent-io", format!("failed to {what}: {e}"));
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).map_err(io("clear an old task directory"))?;
    }
    let (input, work, home) = (dir.path.join("input"), dir.path.join("work"), dir.path.join("home"));
    for d in [&input, &work, &home] {
        std::fs::create_dir_all(d).map_err(io("create the task directory"))?;
    }
    sandbox::open_output(&dir.output()).map_err(io("create the output directory"))?;
    let (lease, tarball, codename) = match job.environment() {
        Some(env) => {
            let want = ENVIRONMENT;
            let lease = ctx
                .cache
                .acquire_for(&ctx.client, env, want)
                .await
                .map_err(|e| TaskError::new(e.code(), e.to_string()))?;
            let tarball = tarballs::tarball_of(&tarballs::store_dir(&ctx.config.data_dir), env)
                .ok_or_else(|| TaskError::new("image-download-failed", format!("environment {env} has no tarball")))?;
            let codename = ctx
                .client
                .artifact(env)
                .await
                .ok()
                .and_then(|a| a.data.get("codename").and_then(Value::as_str).map(str::to_owned));
            (Some(lease), Some(tarball), codename)
        }
        None => (None, None, None),
    };
    let (source, binaries) = job.inputs();
    let fetched = inputs::fetch(&ctx.client, source, &binaries, &input)
        .await
        .map_err(|e| TaskError::new(e.code(), e.to_string()))?;
    let paths = Paths {
        input: input.clone(),
        output: dir.output(),
        home: home.clone(),
        tarball,
        dsc: fetched.dsc.as_ref().map(|(p, _)| p.clone()),
        debs: fetched.debs.clone(),
        codename,
    };
    let scratch = scratch_dir(&dir.path);
    create_scratch_dir(&scratch).map_err(io("create the tool's temporary directory"))?;
    if let Some(config) = job.config_file(&scratch) {
        std::fs::write(home.join(jobs::SBUILD_CONFIG_FILE), config).map_err(io("write the tool's configuration"))?;
    }
    let (args, extra_env) = job.command(&paths).map_err(|m| TaskError::new("invalid-task", m))?;
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        format!("HOME={}", home.display()),
        "LANG=C.UTF-8".to_owned(),
        "DEBIAN_FRONTEND=noninteractive".to_owned(),
        format!("TMPDIR={}", scratch.display()),
    ];
    env.extend(extra_env.into_iter().map(|(k, v)| format!("{k}={v}")));
    let timeout = wr.task_data.get("timeout").and_then(Value::as_u64).unwrap_or(ctx.config.default_timeout);
    let spec = TaskSpec {
        version: TASK_SPEC_VERSION,
        backend: HOST_TOOL.to_owned(),
        args,
        env,
        cwd: work.display().to_string(),
        // The tool reaches the package mirrors; the build or test proper
        // runs without network where the tool allows it (DESIGN §5).
        network: true,
        memory: 0,
        pids: 0,
        cpus: 0.0,
        timeout_secs: timeout,
        notice: None,
        incus: None,
        qemu: None,
        host: Some(HostTask { cwd: work, tmp: Some(scratch) }),
    };
    spec.save(&dir).map_err(|e| TaskError::new("sandbox-spec", e.to_string()))?;
    let sha256 = lease.as_ref().map(|l| l.sha256.clone());
    let mut record = TaskRecord::new(wr.id, wr.attempt, dir.path.clone(), HOST_TOOL, sha256);
    record.environment = job.environment();
    record.debian =
        Some(crate::supervisor::journal::DebianTask { task: wr.task_name.clone(), task_data: wr.task_data.clone() });
    ctx.journal.write(&record).map_err(io("write the journal"))?;
    record.shim = Some(crate::daemon::task::spawn_shim(ctx, &dir).await?);
    ctx.journal.write(&record).map_err(io("write the journal"))?;
    tracing::info!(id = wr.id, attempt = wr.attempt, task = %wr.task_name, "Debian task started");
    Ok((record, lease))
}

fn dsc_in(input: &Path) -> Option<SourcePackage> {
    let entries = std::fs::read_dir(input).ok()?;
    let dsc = entries.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "dsc"))?;
    SourcePackage::from_dsc(&std::fs::read_to_string(dsc).ok()?).ok()
}

/// The shim is done: upload the task's artifacts (each once, even across
/// restarts) and make its result.
pub async fn finish(
    ctx: &Context,
    dir: &TaskDir,
    record: &mut TaskRecord,
    status: &ShimStatus,
) -> (WorkResult, Map<String, Value>) {
    let Some(task) = record.debian.clone() else {
        return crate::daemon::follow::error_result("agent-io", "not a Debian task");
    };
    let job = match Job::parse(&task.task, &task.task_data) {
        Ok(job) => job,
        Err(e) => return crate::daemon::follow::error_result("invalid-task", &e),
    };
    let source = dsc_in(&dir.path.join("input"));
    let output = dir.output();
    let job2 = job.clone();
    let collected = tokio::task::spawn_blocking({
        let status = status.clone();
        move || collect::collect(&job2, &status, &output, source.as_ref())
    })
    .await;
    let collected = match collected {
        Ok(c) => c,
        Err(e) => return crate::daemon::follow::error_result("agent-io", &format!("failed to read the output: {e}")),
    };
    let mut out = collected.output.clone();
    let mut binary_packages = Vec::new();
    for produced in &collected.artifacts {
        let id = match record.uploads.get(produced.role) {
            Some(id) => *id,
            None => {
                let uploaded = crate::daemon::output::upload(
                    &ctx.client,
                    produced.category,
                    produced.data.clone(),
                    record.id,
                    &produced.files,
                )
                .await;
                match uploaded {
                    Ok(Some(id)) => {
                        record.uploads.insert(produced.role.to_owned(), id);
                        record.artifacts.push(id);
                        if let Err(e) = ctx.journal.write(record) {
                            tracing::error!(id = record.id, error = %e, "failed to write the journal");
                        }
                        id
                    }
                    Ok(None) => continue,
                    Err(e) => return crate::daemon::follow::error_result("artifact-upload-failed", &e.to_string()),
                }
            }
        };
        if produced.role == "binary_packages" {
            binary_packages.push(id);
        } else {
            out.insert(produced.role.to_owned(), json!(id));
        }
    }
    if matches!(job, Job::Sbuild { .. } | Job::Autopkgtest { .. }) {
        // These tools isolate the build or test with Debian's own unshare mode.
        out.insert("resolved_backend".into(), json!("unshare"));
    }
    if matches!(job, Job::Sbuild { .. }) {
        out.insert("binary_packages".into(), json!(binary_packages));
        for role in ["upload", "build_log"] {
            out.entry(role).or_insert(Value::Null);
        }
    }
    let mut provenance = tools::provenance(&task.task);
    if let Some(sha) = &record.environment_sha256 {
        provenance.insert("environment_sha256".into(), json!(sha));
    }
    out.insert("provenance".into(), Value::Object(provenance));
    out.insert("errors".into(), json!(collected.errors));
    out.insert("exit_code".into(), json!(status.exit_code));
    out.insert("timed_out".into(), json!(status.outcome == crate::supervisor::task_dir::Outcome::TimedOut));
    (collected.result, out)
}
