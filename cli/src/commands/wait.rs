//! `kiln wait ID` and `submit --wait`: poll the request until it finishes,
//! with a spinner saying where it is, and exit with its result's code
//! (DESIGN §8). A coordinator restart is ridden out: it may restart at any
//! time, so the client retries an unreachable server for a while.

use super::Ctx;
use crate::cli::WaitArgs;
use crate::error::CliError;
use crate::{output, progress};
use kiln_shared::client::ClientError;
use kiln_shared::exit;
use kiln_shared::work::WorkRequest;
use kiln_shared::WorkStatus;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// How long an unreachable coordinator is retried while waiting.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(60);
const MAX_POLL: Duration = Duration::from_secs(1);

pub async fn run(ctx: &Ctx, args: WaitArgs) -> Result<u8, CliError> {
    let wr = ctx.api(ctx.client.work_request(args.id)).await?;
    follow(ctx, wr, args.timeout).await
}

/// Wait for `wr` to reach a final status; print it and return its exit code.
pub async fn follow(ctx: &Ctx, mut wr: WorkRequest, timeout: Option<u64>) -> Result<u8, CliError> {
    let spinner = progress::spinner(ctx.quiet);
    let deadline = timeout.map(|s| (s, Instant::now() + Duration::from_secs(s)));
    let mut delay = Duration::from_millis(100);
    let mut unreachable_since: Option<Instant> = None;
    while !wr.status.is_final() {
        spinner.set_message(describe(&wr));
        let mut wake = Instant::now() + delay;
        if let Some((secs, at)) = deadline {
            if Instant::now() >= at {
                spinner.finish_and_clear();
                return Err(CliError::Timeout(secs, wr.id));
            }
            wake = wake.min(at);
        }
        tokio::time::sleep_until(wake).await;
        delay = (delay * 2).min(MAX_POLL);
        match ctx.client.work_request(wr.id).await {
            Ok(next) => {
                if next.status != wr.status || next.attempt != wr.attempt {
                    delay = Duration::from_millis(100);
                }
                wr = next;
                unreachable_since = None;
            }
            Err(ClientError::Transport { .. })
                if unreachable_since.get_or_insert_with(Instant::now).elapsed() < OUTAGE_PATIENCE =>
            {
                spinner.set_message(format!("work request {}: coordinator unreachable, retrying", wr.id));
            }
            Err(e) => {
                spinner.finish_and_clear();
                return Err(ctx.error(e));
            }
        }
    }
    spinner.finish_and_clear();
    report(ctx, &wr)?;
    Ok(exit_code(&wr))
}

fn describe(wr: &WorkRequest) -> String {
    match (&wr.status, &wr.worker) {
        (WorkStatus::Running, Some(worker)) => {
            format!("work request {}: running on {worker} (attempt {})", wr.id, wr.attempt)
        }
        (status, _) => format!("work request {}: {status}", wr.id),
    }
}

/// The exit code of a finished request (DESIGN §8).
pub fn exit_code(wr: &WorkRequest) -> u8 {
    match wr.status {
        WorkStatus::Aborted => exit::ABORTED,
        _ => exit::for_result(wr.result),
    }
}

fn report(ctx: &Ctx, wr: &WorkRequest) -> Result<(), CliError> {
    if ctx.json {
        return output::json(wr);
    }
    let outcome = match wr.status {
        WorkStatus::Aborted => format!("aborted ({})", wr.abort_reason.as_deref().unwrap_or("no reason given")),
        _ => format!("completed {}", output::opt(wr.result)),
    };
    let mut text = format!("work request {} {outcome}", wr.id);
    let codes: Vec<&str> = wr
        .output_data
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(|e| e.get("code").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if !codes.is_empty() {
        text.push_str(&format!(" [errors: {}]", codes.join(", ")));
    }
    output::line(&text)
}
