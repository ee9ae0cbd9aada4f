//! Signing keys (issue 8): the list of keys signing agents generated and
//! their access lists, managed by admins; the check that refuses a signing
//! request for a key its requester may not use; and recording a key when
//! its `generate_key` completes. Only public facts are stored here.

use super::extract::ApiPath;
use super::{ApiError, ApiJson};
use crate::auth::Principal;
use crate::state::AppState;
use crate::store::signing::{KeyAccess, SigningKey};
use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use kiln_shared::work::{NewWorkRequest, WorkRequest};
use kiln_shared::{Page, TaskType, WorkResult};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/signing-keys", get(list))
        .route("/api/1/signing-keys/{fingerprint}", get(show))
        .route("/api/1/signing-keys/{fingerprint}/access", put(set_access))
}

async fn list(State(state): State<AppState>, who: Principal) -> Result<Json<Page<SigningKey>>, ApiError> {
    who.require_user()?;
    let keys = state.db(|s| s.signing_keys()).await?;
    Ok(Json(Page { items: keys, next: None }))
}

async fn show(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(fpr): ApiPath<String>,
) -> Result<Json<SigningKey>, ApiError> {
    who.require_user()?;
    let key = state.db(move |s| s.signing_key(&fpr.to_ascii_uppercase())).await?;
    key.map(Json).ok_or_else(|| ApiError::not_found("no such signing key"))
}

async fn set_access(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(fpr): ApiPath<String>,
    ApiJson(access): ApiJson<KeyAccess>,
) -> Result<Json<SigningKey>, ApiError> {
    who.require_admin()?;
    let key = state.db(move |s| s.set_key_access(&fpr.to_ascii_uppercase(), &access)).await?;
    tracing::info!(key = %key.fingerprint, users = ?key.users, templates = ?key.workflow_templates, revoked = key.revoked, "signing key access set");
    Ok(Json(key))
}

/// Refuse (403) a signing request its requester may not make: only admins
/// generate keys; `sign` and `debsign` need the requester on the key's
/// access list and a key that is not revoked.
pub async fn authorize(state: &AppState, who: &Principal, new: &NewWorkRequest) -> Result<(), ApiError> {
    if new.task_type != TaskType::Signing {
        return Ok(());
    }
    if new.task_name == "generate_key" {
        who.require_admin()?;
        return Ok(());
    }
    let user = who.require_user()?.to_owned();
    let fpr = new.task_data.get("key").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
    let key = state.db(move |s| s.signing_key(&fpr)).await?;
    let template = match new.parent {
        Some(parent) => template_of(state, parent).await?,
        None => None,
    };
    match key {
        Some(k) if k.may_sign(&user, template.as_deref()) => Ok(()),
        Some(k) if k.revoked => Err(ApiError::forbidden(format!("signing key {} is revoked", k.fingerprint))),
        _ => Err(ApiError::forbidden(format!("{user} may not sign with this key"))),
    }
}

/// The workflow template that started the workflow `id` belongs to, if
/// any: the nearest `workflow_data.workflow_template` up the parents.
async fn template_of(state: &AppState, id: i64) -> Result<Option<String>, ApiError> {
    let mut next = Some(id);
    for _ in 0..64 {
        let Some(id) = next else { break };
        let Some(wr) = state.db(move |s| s.work_request(id)).await? else { break };
        if let Some(t) = wr.workflow_data.get("workflow_template").and_then(Value::as_str) {
            return Ok(Some(t.to_owned()));
        }
        next = wr.parent;
    }
    Ok(None)
}

/// Record the key a successful `generate_key` produced (with an empty access
/// list: admins grant it).
pub async fn on_complete(state: &AppState, wr: &WorkRequest) -> Result<(), ApiError> {
    if wr.task_type != TaskType::Signing || wr.task_name != "generate_key" || wr.result != Some(WorkResult::Success) {
        return Ok(());
    }
    let text = |k: &str| wr.output_data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let fingerprint = text("fingerprint").to_ascii_uppercase();
    if !crate::tasks::signing::is_fingerprint(&fingerprint) {
        return Err(ApiError::bad_request("invalid-output", "generate_key reported no valid fingerprint"));
    }
    let key = SigningKey {
        fingerprint,
        purpose: text("purpose"),
        description: wr.task_data.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
        public_key_artifact: wr.output_data.get("public_key_artifact").and_then(Value::as_i64),
        worker: wr.worker.clone(),
        users: Vec::new(),
        workflow_templates: Vec::new(),
        revoked: false,
        created_at: chrono::Utc::now(),
    };
    state.db(move |s| s.add_signing_key(&key)).await
}
