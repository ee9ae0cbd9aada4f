//! Start-up: resume every task the journal knows. A record is checked
//! against reality before it is trusted: a shim is live only if its pid
//! **and** start time match; a status on disk means the task finished (it
//! is never re-run); a task that never got a shim is reported as an error
//! so the coordinator can retry it.

use super::follow::{error_result, follow};
use super::report::report;
use super::{track, untrack, Context};
use std::sync::Arc;

pub async fn recover(ctx: &Arc<Context>) -> std::io::Result<usize> {
    let records = ctx.journal.load_all()?;
    let count = records.len();
    for record in records {
        let (id, attempt) = (record.id, record.attempt);
        if record.shim.is_none() && record.result.is_none() {
            tracing::warn!(id, attempt, "the agent stopped while preparing this task: reporting it as an error");
            let _ = std::fs::remove_dir_all(&record.task_dir);
            let _ = ctx.journal.remove(id, attempt);
            let (result, out) = error_result("agent-restarted", "the agent restarted before the task started");
            report(ctx, id, attempt, result, out).await;
            continue;
        }
        let live = record.shim.is_some_and(|s| s.is_alive());
        tracing::info!(
            id,
            attempt,
            shim_alive = live,
            acked_seq = record.acked_seq,
            result_known = record.result.is_some(),
            "resuming a task from the journal"
        );
        let abort = track(ctx, id, attempt);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // Pin the image again while the task may still use it.
            let lease = match record.environment {
                Some(env) if record.result.is_none() => {
                    let want = match crate::backends::by_name(&record.backend) {
                        Some(_) if record.debian.is_some() => crate::debian::ENVIRONMENT,
                        Some(b) => crate::image_cache::Want::new(b.image_category(), b.store()),
                        None => crate::image_cache::Want::TARBALL,
                    };
                    ctx.cache.acquire_for(&ctx.client, env, want).await.ok()
                }
                _ => None,
            };
            follow(&ctx, record, &abort, lease).await;
            untrack(&ctx, id, attempt);
        });
    }
    Ok(count)
}
