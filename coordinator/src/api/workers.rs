//! Workers as users and admins see them: register, list, enable, disable,
//! delete, static metadata.

use super::extract::ApiPath;
use super::{ApiError, ApiJson};
use crate::auth::{tokens, Principal};
use crate::state::AppState;
use crate::store::{TokenRole, WorkerRecord};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use kiln_shared::worker::{keys, Registration, Worker};
use kiln_shared::Page;
use serde_json::{Map, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/workers/register", post(register))
        .route("/api/1/workers", get(list))
        .route("/api/1/workers/{name}/enable", post(enable))
        .route("/api/1/workers/{name}/disable", post(disable))
        .route("/api/1/workers/{name}", delete(remove).get(show))
        .route("/api/1/workers/{name}/static-metadata", put(set_static_metadata))
}

/// Worker names: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid-name",
            format!("{name:?} is not a valid name: use 1-64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// The API view of a stored worker.
pub async fn view(state: &AppState, record: WorkerRecord) -> Result<Worker, ApiError> {
    let name = record.name.clone();
    let running = state.db(move |s| s.running_for_worker(&name)).await?;
    let metadata = record.metadata();
    let concurrency = metadata.get(keys::CONCURRENCY).and_then(Value::as_u64).unwrap_or(1).clamp(1, 1024) as u32;
    let window = chrono::Duration::seconds(i64::try_from(state.config.connected_window).unwrap_or(i64::MAX));
    Ok(Worker {
        connected: record.last_seen.is_some_and(|t| chrono::Utc::now() - t < window),
        name: record.name,
        role: record.role,
        enabled: record.enabled,
        concurrency,
        metadata,
        static_metadata: record.static_metadata,
        running: running.iter().map(|r| r.id).collect(),
        last_seen: record.last_seen,
    })
}

async fn register(
    State(state): State<AppState>,
    ApiJson(reg): ApiJson<Registration>,
) -> Result<(StatusCode, Json<Worker>), ApiError> {
    validate_name(&reg.name)?;
    if reg.token.len() < tokens::MIN_WORKER_TOKEN_LEN || reg.token.len() > 512 {
        return Err(ApiError::bad_request(
            "invalid-token",
            format!("a worker token must be {}-512 characters of random data", tokens::MIN_WORKER_TOKEN_LEN),
        ));
    }
    let enrollment = reg.enrollment_token.as_deref().map(tokens::hash);
    let hash = tokens::hash(&reg.token);
    let record = state
        .db(move |s| {
            let enable = match enrollment {
                None => false,
                Some(h) => match s.token_by_hash(&h)? {
                    Some(t) if t.role == TokenRole::Enrollment => true,
                    _ => return Ok(Err(ApiError::unauthorized("unknown or revoked enrollment token"))),
                },
            };
            if s.token_by_hash(&hash)?.is_some() {
                return Ok(Err(ApiError::conflict("token-taken", "that token is already in use")));
            }
            Ok(Ok(s.register_worker(&reg.name, reg.role, &hash, enable)?))
        })
        .await??;
    tracing::info!(worker = %record.name, enabled = record.enabled, "worker registered");
    Ok((StatusCode::CREATED, Json(view(&state, record).await?)))
}

async fn list(State(state): State<AppState>, who: Principal) -> Result<Json<Page<Worker>>, ApiError> {
    who.require_user()?;
    let records = state.db(|s| s.list_workers()).await?;
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        items.push(view(&state, r).await?);
    }
    Ok(Json(Page { items, next: None }))
}

async fn show(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Worker>, ApiError> {
    who.require_user()?;
    let record = state
        .db(move |s| s.worker(&name).map(|w| w.ok_or(name)))
        .await?
        .map_err(|name| ApiError::not_found(format!("worker {name:?} not found")))?;
    Ok(Json(view(&state, record).await?))
}

async fn set_enabled(state: AppState, who: Principal, name: String, enabled: bool) -> Result<Json<Worker>, ApiError> {
    who.require_admin()?;
    let record = state.db(move |s| s.set_worker_enabled(&name, enabled)).await?;
    tracing::info!(worker = %record.name, enabled, "worker enablement changed");
    // An enabled worker may now take work; wake its long-poll.
    state.scheduler.wakeup.notify_waiters();
    Ok(Json(view(&state, record).await?))
}

async fn enable(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Worker>, ApiError> {
    set_enabled(state, who, name, true).await
}

async fn disable(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Worker>, ApiError> {
    set_enabled(state, who, name, false).await
}

async fn remove(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    let effects = state.db(move |s| s.delete_worker(&name)).await?;
    state.apply(&effects);
    Ok(StatusCode::NO_CONTENT)
}

async fn set_static_metadata(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(metadata): ApiJson<Map<String, Value>>,
) -> Result<Json<Worker>, ApiError> {
    who.require_admin()?;
    let record = state.db(move |s| s.edit_static_metadata(&name, &metadata, &[], true)).await?;
    state.scheduler.wakeup.notify_waiters();
    Ok(Json(view(&state, record).await?))
}
