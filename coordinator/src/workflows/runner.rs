//! The orchestration runner: runs the jobs the store lists (workflows to
//! populate, callbacks to run) on blocking threads, at most a few at once
//! and never two for the same root workflow. The root's lease in the store
//! says the same to any other coordinator sharing the database.

use crate::state::AppState;
use crate::store::{OrchestrationJob, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Orchestrations of different roots that may run at once.
pub const CONCURRENCY: usize = 2;

/// The roots being orchestrated by this process.
type Busy = Arc<Mutex<HashSet<i64>>>;

fn lock(busy: &Busy) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub async fn run(state: AppState) {
    let instance = format!("{:016x}", rand::random::<u64>());
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let busy: Busy = Arc::default();
    let rescan = Arc::new(Notify::new());
    let mut work = state.coordinator_work.subscribe();
    loop {
        match state.db(|s| s.orchestration_jobs(256)).await {
            Ok(jobs) => {
                for job in jobs {
                    if !lock(&busy).insert(job.root) {
                        continue;
                    }
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        lock(&busy).remove(&job.root);
                        break;
                    };
                    let (state, busy, rescan) = (state.clone(), busy.clone(), rescan.clone());
                    let holder = format!("{instance}:{}", job.subject());
                    tokio::spawn(async move {
                        run_job(&state, &job, &holder).await;
                        lock(&busy).remove(&job.root);
                        drop(permit);
                        rescan.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!(error = %e.message, "failed to list orchestrations"),
        }
        tokio::select! {
            _ = work.changed() => {}
            _ = rescan.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn run_job(state: &AppState, job: &OrchestrationJob, holder: &str) {
    let (job, holder) = (job.clone(), holder.to_owned());
    let store = state.store.clone();
    let ran = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        if !store.begin_orchestration(&job, &holder, chrono::Utc::now())? {
            return Ok(None);
        }
        let orchestrator = super::orchestrator(&job.workflow_name).unwrap_or(&MISSING);
        let ran = store.run_orchestration(&job, &holder, orchestrator);
        if ran.is_err() {
            let _ = store.release_lease(job.root, &holder);
        }
        ran.map(|effects| Some((job, effects)))
    })
    .await;
    match ran {
        Ok(Ok(Some((job, effects)))) => {
            tracing::debug!(workflow = job.workflow, kind = ?job.kind, "orchestrated");
            state.apply(&effects);
        }
        Ok(Ok(None)) => tracing::debug!("root busy elsewhere"),
        Ok(Err(e)) => tracing::error!(error = %e, "orchestration failed"),
        Err(e) => tracing::error!(error = %e, "orchestration panicked"),
    }
}

/// Stands in for an orchestrator this build does not have (a workflow
/// stored by a newer coordinator): it fails the workflow with a message.
struct Missing;
static MISSING: Missing = Missing;

impl super::Orchestrator for Missing {
    fn validate(&self, _: &serde_json::Map<String, serde_json::Value>) -> Result<(), super::WorkflowError> {
        Err(super::WorkflowError::invalid("task_name", "this coordinator has no such workflow"))
    }
    fn populate(&self, _: &mut dyn super::WorkflowContext) -> Result<(), super::WorkflowError> {
        Err(super::WorkflowError::invalid("task_name", "this coordinator has no such workflow"))
    }
}
