//! `GET /api/1/health`.

use crate::state::AppState;
use axum::routing::get;
use axum::{Json, Router};
use kiln_shared::protocol::Health;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/1/health", get(|| async { Json(Health { status: "ok".into() }) }))
}
