//! What every handler shares.

use crate::api::ApiError;
use crate::config::CoordinatorConfig;
use crate::files::FileStore;
use crate::scheduler::Scheduler;
use crate::store::{Effects, Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<Scheduler>,
    pub files: Arc<FileStore>,
    pub config: Arc<CoordinatorConfig>,
    /// When this coordinator process started: heartbeat grace counts from here.
    pub started_at: DateTime<Utc>,
    /// Signalled when log lines arrive or work finishes, for followers.
    pub log_activity: Arc<Notify>,
    /// Bumped when work the coordinator runs itself becomes ready; the
    /// orchestration runner, server-task pool and wait timers watch it.
    pub coordinator_work: Arc<tokio::sync::watch::Sender<u64>>,
    /// One assignment at a time per worker, so its slot count holds even
    /// when it polls `next` twice at once.
    pub assigning: Arc<WorkerLocks>,
}

/// Per-worker async locks, created on first use.
#[derive(Debug, Default)]
pub struct WorkerLocks {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl WorkerLocks {
    pub fn of(&self, worker: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(worker.to_owned()).or_default().clone()
    }
}

impl AppState {
    /// Run a store operation off the async threads.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Tell the in-memory parts what a store operation changed.
    pub fn apply(&self, effects: &Effects) {
        self.scheduler.apply(effects);
        if !effects.finished.is_empty() {
            self.log_activity.notify_waiters();
        }
        if !effects.coordinator.is_empty() {
            self.coordinator_work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
