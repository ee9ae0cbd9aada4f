//! Wait tasks' timers: a running `wait/delay` completes `success` at its
//! `delay_until`. The due ones come from the store each time, so a restart
//! loses no timer; the loop sleeps until the next one is due (at most a
//! second) or new work arrives.

use crate::state::AppState;
use crate::store::CompletionArgs;
use kiln_shared::WorkResult;
use serde_json::json;
use std::time::Duration;

/// Longest sleep between two looks at the store.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run_timers(state: AppState) {
    let mut work = state.coordinator_work.subscribe();
    loop {
        let now = chrono::Utc::now();
        match state.db(move |s| s.due_delays(now)).await {
            Ok(due) => {
                for id in due {
                    complete(&state, id).await;
                }
            }
            Err(e) => tracing::error!(error = %e.message, "failed to list due delays"),
        }
        let next = state.db(|s| s.next_wake()).await.ok().flatten();
        let sleep = next.and_then(|at| (at - chrono::Utc::now()).to_std().ok()).map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
        tokio::select! {
            _ = work.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

async fn complete(state: &AppState, id: i64) {
    let output = json!({"completed_by": "timer"}).as_object().cloned().unwrap_or_default();
    let args = CompletionArgs { worker: None, attempt: None, result: WorkResult::Success, output_data: output };
    match state.db(move |s| s.complete(id, args)).await {
        Ok((_, effects)) => {
            state.apply(&effects);
            tracing::info!(id, "delay over");
        }
        // Completed or aborted in the meantime.
        Err(e) => tracing::debug!(id, error = %e.message, "delay not completed"),
    }
}
