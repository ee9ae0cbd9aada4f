//! The agent daemon: publish the fingerprint, long-poll for work while a
//! slot is free, run each task under its shim, heartbeat every 2 s (which is
//! how aborts arrive), and re-publish the fingerprint when it changes.

pub(crate) mod follow;
mod layers;
pub use layers::LayerPool;
pub(crate) mod output;
mod recover;
mod report;
pub(crate) mod task;

use crate::config::AgentConfig;
use crate::fingerprint::{ProbeDepth, ProbeInput};
use crate::image_cache::ImageCache;
use crate::supervisor::journal::Journal;
use kiln_shared::client::{Client, ClientError};
use kiln_shared::work::WorkRequest;
use kiln_shared::worker::{Heartbeat, RunningWork};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// While work runs; aborts arrive in the reply, so this bounds their latency.
const HEARTBEAT: Duration = Duration::from_millis(1500);
const IDLE_HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the host is probed again (backends quickly: no trial task).
const REFRESH: Duration = Duration::from_secs(60);
/// How often the backends get a full probe (a trial container, a VM boot)
/// even when the quick checks see no change.
const FULL_PROBE_EVERY: Duration = Duration::from_secs(600);
const LONG_POLL: Duration = Duration::from_secs(30);

/// What every task of this agent shares.
pub struct Context {
    pub config: AgentConfig,
    pub client: Client,
    pub cache: ImageCache,
    pub journal: Journal,
    pub agent_exe: PathBuf,
    pub metadata: RwLock<Map<String, Value>>,
    /// Can the writable layer get a quota here?
    pub disk_quota: bool,
    running: Mutex<HashMap<(i64, u32), Arc<AtomicBool>>>,
    slot_freed: Notify,
    /// Wakes the idle heartbeat when work starts.
    work_started: Notify,
    /// Pre-formatted writable layers of the default quota.
    pub layers: Option<Arc<layers::LayerPool>>,
}

impl Context {
    pub fn new(
        config: AgentConfig,
        client: Client,
        cache: ImageCache,
        journal: Journal,
        agent_exe: PathBuf,
        metadata: Map<String, Value>,
    ) -> Self {
        let disk_quota = metadata.get("limits:disk_quota") == Some(&Value::Bool(true));
        Context {
            config,
            client,
            cache,
            journal,
            agent_exe,
            metadata: RwLock::new(metadata),
            disk_quota,
            running: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
            work_started: Notify::new(),
            layers: None,
        }
    }

    pub fn backend_available(&self, backend: &str) -> bool {
        let md = self.metadata.read().unwrap_or_else(|p| p.into_inner());
        md.get(&format!("executor:{backend}:available")) == Some(&Value::Bool(true))
    }

    /// The cgroup controllers the fingerprint found enforceable.
    pub fn enforced_controllers(&self) -> Vec<String> {
        let md = self.metadata.read().unwrap_or_else(|p| p.into_inner());
        ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| md.get(&format!("limits:{c}")) == Some(&Value::Bool(true)))
            .map(str::to_owned)
            .collect()
    }

    fn running(&self) -> Vec<RunningWork> {
        let map = self.running.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().map(|(id, attempt)| RunningWork { id: *id, attempt: *attempt }).collect()
    }

    fn slots_free(&self) -> bool {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len() < self.config.concurrency as usize
    }

    fn draining(&self) -> bool {
        self.config.data_dir.join("drain").exists()
    }
}

/// Keep the pool of formatted layers full, off the async threads.
pub fn refill_layers(ctx: &Context) {
    if let Some(pool) = ctx.layers.clone() {
        tokio::task::spawn_blocking(move || pool.fill());
    }
}

/// Count an attempt as running (slots, heartbeats); its abort flag.
fn track(ctx: &Context, id: i64, attempt: u32) -> Arc<AtomicBool> {
    let abort = Arc::new(AtomicBool::new(false));
    ctx.running.lock().unwrap_or_else(|p| p.into_inner()).insert((id, attempt), abort.clone());
    ctx.work_started.notify_waiters();
    abort
}

fn untrack(ctx: &Context, id: i64, attempt: u32) {
    ctx.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&(id, attempt));
    ctx.slot_freed.notify_waiters();
}

/// Start a task in the background, holding a slot until it ends.
fn start(ctx: &Arc<Context>, wr: WorkRequest) {
    let abort = track(ctx, wr.id, wr.attempt);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        tracing::info!(id = wr.id, attempt = wr.attempt, task = %wr.task_name, "assigned");
        let (id, attempt) = (wr.id, wr.attempt);
        task::run(ctx.clone(), wr, abort).await;
        untrack(&ctx, id, attempt);
    });
}

async fn heartbeat_loop(ctx: Arc<Context>) {
    loop {
        let running = ctx.running();
        match ctx.client.heartbeat(&Heartbeat { running: running.clone() }).await {
            Ok(reply) => {
                let map = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
                for stop in reply.abort {
                    if let Some(flag) = map.get(&(stop.id, stop.attempt)) {
                        if !flag.swap(true, Ordering::SeqCst) {
                            tracing::warn!(
                                id = stop.id,
                                attempt = stop.attempt,
                                "the coordinator aborted this task: stopping it"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the coordinator to answer heartbeats; running tasks continue")
            }
        }
        if running.is_empty() {
            let _ = tokio::time::timeout(IDLE_HEARTBEAT, ctx.work_started.notified()).await;
        } else {
            tokio::time::sleep(HEARTBEAT).await;
        }
    }
}

/// Probe the host (blocking: it runs commands) off the async threads.
pub async fn probe(config: &AgentConfig, agent_exe: &std::path::Path, depth: ProbeDepth) -> Map<String, Value> {
    let (config, exe) = (config.clone(), agent_exe.to_owned());
    tokio::task::spawn_blocking(move || {
        let input = crate::fingerprint::ProbeInput { backend_depth: depth, ..ProbeInput::for_host(&config, exe) };
        crate::fingerprint::probe(&input)
    })
    .await
    .unwrap_or_default()
}

async fn publish(ctx: &Context, metadata: &Map<String, Value>) {
    let mut delay = Duration::from_secs(1);
    loop {
        match ctx.client.put_metadata(metadata).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the coordinator to publish this host's metadata");
                tokio::time::sleep(crate::session::jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Publish what changed on the host. Trial tasks in the backends (an
/// Incus container, a QEMU boot) run every [`FULL_PROBE_EVERY`], or at once
/// when a quick check sees a backend come or go; in between, the quick
/// checks catch a daemon that stopped or a binary that went away.
async fn refresh_loop(ctx: Arc<Context>) {
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(REFRESH).await;
        let full_due = last_full.elapsed() >= FULL_PROBE_EVERY;
        let depth = if full_due { ProbeDepth::Full } else { ProbeDepth::Quick };
        let mut fresh = probe(&ctx.config, &ctx.agent_exe, depth).await;
        let current = ctx.metadata.read().unwrap_or_else(|p| p.into_inner()).clone();
        if depth == ProbeDepth::Quick {
            let moved = crate::fingerprint::availability_changed(&current, &fresh);
            if !moved.is_empty() {
                tracing::info!(?moved, "a quick check saw a backend change: probing fully");
                fresh = probe(&ctx.config, &ctx.agent_exe, ProbeDepth::Full).await;
                last_full = tokio::time::Instant::now();
            }
        } else {
            last_full = tokio::time::Instant::now();
        }
        let changed = crate::fingerprint::changed_keys(&current, &fresh);
        if !changed.is_empty() {
            tracing::info!(?changed, "host metadata changed: publishing it");
            publish(&ctx, &fresh).await;
            *ctx.metadata.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
    }
}

/// The work loop; returns only on a fatal error.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let metadata = ctx.metadata.read().unwrap_or_else(|p| p.into_inner()).clone();
    refill_layers(&ctx);
    // Resume before anything else: these tasks hold slots.
    let resumed = recover::recover(&ctx).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed tasks from the journal");
    }
    tokio::spawn(heartbeat_loop(ctx.clone()));
    publish(&ctx, &metadata).await;
    tokio::spawn(refresh_loop(ctx.clone()));
    let mut delay = Duration::from_secs(1);
    let mut said_draining = false;
    loop {
        if ctx.draining() {
            if !said_draining {
                tracing::warn!("draining (kiln-agent drain): taking no new work; running tasks finish");
                said_draining = true;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        said_draining = false;
        if !ctx.slots_free() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ctx.slot_freed.notified()).await;
            continue;
        }
        match ctx.client.next(LONG_POLL).await {
            Ok(Some(wr)) => {
                delay = Duration::from_secs(1);
                start(&ctx, wr);
            }
            Ok(None) => delay = Duration::from_secs(1),
            Err(e) if e.code() == Some("worker-disabled") => {
                tracing::warn!("this worker is disabled on the coordinator: waiting for an admin to enable it (kiln-coordinator worker enable {})", ctx.config.worker_name());
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e @ ClientError::Api { .. }) if e.status().map(|s| s.as_u16()) == Some(401) => {
                anyhow::bail!("the coordinator does not accept this agent's token ({e}); was the worker deleted? Remove {} to register anew", ctx.config.data_dir.join("token").display());
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the coordinator to ask for work");
                tokio::time::sleep(crate::session::jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
