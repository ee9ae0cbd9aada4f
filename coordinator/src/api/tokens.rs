//! `DELETE /api/1/tokens/{name}`: revoke a token (admin).

use super::extract::ApiPath;
use super::ApiError;
use crate::auth::Principal;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/1/tokens/{name}", delete(revoke))
}

async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    state.db(move |s| s.revoke_token(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
