//! Reporting a result: retried with backoff while the coordinator is away,
//! done when it answers (a 409 means it already knows: completed, aborted,
//! or the attempt is stale).

use super::Context;
use kiln_shared::client::ClientError;
use kiln_shared::work::Completion;
use kiln_shared::WorkResult;
use serde_json::{Map, Value};
use std::time::Duration;

pub async fn report(ctx: &Context, id: i64, attempt: u32, result: WorkResult, output_data: Map<String, Value>) {
    let completion = Completion { result, attempt: Some(attempt), output_data: Some(output_data) };
    let mut delay = Duration::from_secs(1);
    loop {
        match ctx.client.complete(id, &completion).await {
            Ok(_) => {
                tracing::info!(id, attempt, %result, "result reported");
                return;
            }
            Err(e @ ClientError::Api { .. }) if e.status().is_some_and(|s| s.is_client_error()) => {
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
