//! What an agent does with its own token: report metadata, heartbeat (and
//! learn what to abort), and long-poll for work.

use super::{ApiError, ApiJson};
use crate::auth::Principal;
use crate::scheduler::matcher::AgentView;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use kiln_shared::worker::{keys, Heartbeat, HeartbeatReply, RunningWork, Worker};
use kiln_shared::WorkStatus;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::time::Instant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/worker/metadata", put(put_metadata))
        .route("/api/1/worker/heartbeat", post(heartbeat))
        .route("/api/1/worker/next", post(next))
}

async fn put_metadata(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(metadata): ApiJson<Map<String, Value>>,
) -> Result<Json<Worker>, ApiError> {
    let name = who.require_worker()?.name.clone();
    let record = state
        .db(move |s| {
            s.touch_worker(&name, chrono::Utc::now())?;
            s.set_dynamic_metadata(&name, &metadata)
        })
        .await?;
    state.scheduler.wakeup.notify_waiters();
    Ok(Json(super::workers::view(&state, record).await?))
}

async fn heartbeat(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    // A disabled worker still heartbeats: it drains what it runs.
    let name = who.require_worker()?.name.clone();
    // An agent lists work from the moment it arrives, so an assignment it
    // still does not list after this long never reached it.
    let forgotten_after = chrono::Duration::seconds(i64::try_from(state.config.lost_assignment_after).unwrap_or(60));
    let (abort, effects) = state
        .db(move |s| {
            let now = chrono::Utc::now();
            s.touch_worker(&name, now)?;
            let mut abort = Vec::new();
            for run in &hb.running {
                let current = s.work_request(run.id)?.is_some_and(|wr| {
                    wr.status == WorkStatus::Running && wr.attempt == run.attempt && wr.worker.as_deref() == Some(&name)
                });
                if !current {
                    abort.push(RunningWork { id: run.id, attempt: run.attempt });
                }
            }
            // Work assigned to it that it does not list, long after the
            // assignment: the reply to its `next` was lost. Give the attempt
            // up so the request is retried instead of stranded.
            let mut effects = crate::store::Effects::default();
            for held in s.running_for_worker(&name)? {
                if hb.running.contains(&held) {
                    continue;
                }
                let forgotten = s
                    .work_request(held.id)?
                    .and_then(|wr| wr.started_at)
                    .is_some_and(|t| now - t > forgotten_after);
                if forgotten {
                    tracing::warn!(worker = %name, id = held.id, attempt = held.attempt, "the worker does not know this attempt: giving it up");
                    effects.merge(s.fail_attempt(held, "worker-forgot")?);
                }
            }
            Ok((abort, effects))
        })
        .await?;
    state.apply(&effects);
    Ok(Json(HeartbeatReply { abort }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextQuery {
    #[serde(default)]
    wait: u64,
}

/// Long-poll: wait up to `wait` seconds for a request this agent can take.
async fn next(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid-query", e.body_text()))?;
    let name = who.require_enabled_worker()?.name.clone();
    let deadline = Instant::now() + Duration::from_secs(query.wait.min(state.config.max_wait));
    loop {
        // Register for wake-ups before looking, so none is missed in between.
        let woken = state.scheduler.wakeup.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(work) = try_assign(&state, &name).await? {
            tracing::info!(worker = %name, id = work.id, attempt = work.attempt, task = %work.task_name, "assigned");
            return Ok(Json(work).into_response());
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// One matching pass: fresh worker state, free slot, best candidate.
async fn try_assign(state: &AppState, name: &str) -> Result<Option<kiln_shared::work::WorkRequest>, ApiError> {
    // The slot check and the assignment are two transactions: keep another
    // `next` of the same worker from slipping in between.
    let lock = state.assigning.of(name);
    let _assigning = lock.lock().await;
    let worker_name = name.to_owned();
    let (record, running) = state
        .db(move |s| {
            s.touch_worker(&worker_name, chrono::Utc::now())?;
            let record = s.worker(&worker_name)?;
            let running = s.running_for_worker(&worker_name)?.len();
            Ok((record, running))
        })
        .await?;
    let Some(record) = record else {
        return Err(ApiError::unauthorized("this worker was deleted"));
    };
    if !record.enabled {
        return Err(ApiError::worker_disabled(name));
    }
    let metadata = record.metadata();
    let slots = metadata.get(keys::CONCURRENCY).and_then(Value::as_u64).unwrap_or(1).max(1);
    if running as u64 >= slots {
        return Ok(None);
    }
    loop {
        let agent = AgentView { role: record.role, metadata: &metadata };
        let Some(entry) = state.scheduler.take_for(&agent) else {
            return Ok(None);
        };
        let (id, worker_name) = (entry.id, name.to_owned());
        match state.db(move |s| s.assign(id, &worker_name, chrono::Utc::now())).await {
            Ok(Some(work)) => return Ok(Some(work)),
            Ok(None) => continue, // no longer pending: a stale index entry
            Err(e) => {
                state.scheduler.put_back(entry);
                return Err(e);
            }
        }
    }
}
