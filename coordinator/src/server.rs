//! Serving: open the store, rebuild the scheduler's index, run the HTTP
//! server and the lost-worker sweeper until `shutdown` resolves.

use crate::api;
use crate::config::CoordinatorConfig;
use crate::files::FileStore;
use crate::scheduler::Scheduler;
use crate::state::AppState;
use crate::store::{CoordinatorTaskStore, SqliteStore, Store, WorkStore, WorkflowStore};
use anyhow::Context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Open everything under `config.data_dir` and build the shared state.
pub fn open_state(config: CoordinatorConfig) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    let db = config.data_dir.join("kiln.sqlite3");
    let store = SqliteStore::open(&db).with_context(|| format!("failed to open the store {}", db.display()))?;
    let files = FileStore::open(&config.data_dir)
        .with_context(|| format!("failed to open the file store under {}", config.data_dir.display()))?;
    let pending = store.pending_entries().context("failed to load pending work")?;
    // This process is the store's one coordinator: what a previous one was
    // orchestrating or running itself starts over.
    store.release_all_leases().context("failed to release orchestration leases")?;
    let requeued = store.requeue_server_tasks().context("failed to requeue server tasks")?;
    if requeued > 0 {
        tracing::info!(requeued, "interrupted server tasks requeued");
    }
    tracing::info!(pending = pending.len(), "scheduler index rebuilt");
    Ok(AppState {
        assigning: Arc::default(),
        store: Arc::new(store),
        scheduler: Arc::new(Scheduler::new(pending)),
        files: Arc::new(files),
        config: Arc::new(config),
        started_at: chrono::Utc::now(),
        log_activity: Arc::new(Notify::new()),
        coordinator_work: Arc::new(tokio::sync::watch::Sender::new(0)),
    })
}

/// Serve on `listener` (plain TCP or [`crate::tls::TlsListener`]) until
/// `shutdown` completes.
pub async fn run<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let background = [
        tokio::spawn(sweep_lost_workers(state.clone())),
        tokio::spawn(crate::workflows::runner::run(state.clone())),
        tokio::spawn(crate::server_tasks::run_pool(state.clone())),
        tokio::spawn(crate::tasks::wait::run_timers(state.clone())),
    ];
    let app = api::router(state);
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    background.iter().for_each(|task| task.abort());
    result.context("HTTP server failed")
}

/// End the running attempts of workers silent for longer than the grace
/// period, counted from this process's start so that a coordinator outage
/// loses no worker.
async fn sweep_lost_workers(state: AppState) {
    let grace = chrono::Duration::seconds(i64::try_from(state.config.heartbeat_grace).unwrap_or(i64::MAX));
    let period = Duration::from_secs(state.config.heartbeat_grace.clamp(1, 5));
    loop {
        tokio::time::sleep(period).await;
        let now = chrono::Utc::now();
        if now - state.started_at < grace {
            continue;
        }
        let store: Arc<dyn Store> = state.store.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let mut all = crate::store::Effects::default();
            for work in store.stale_running(now - grace)? {
                tracing::warn!(
                    id = work.id,
                    attempt = work.attempt,
                    "worker silent past the grace period: attempt lost"
                );
                all.merge(store.fail_attempt(work, "worker-lost")?);
            }
            Ok::<_, crate::store::StoreError>(all)
        })
        .await;
        match swept {
            Ok(Ok(effects)) => state.apply(&effects),
            Ok(Err(e)) => tracing::error!(error = %e, "lost-worker sweep failed"),
            Err(e) => tracing::error!(error = %e, "lost-worker sweep panicked"),
        }
    }
}
