//! REST API v1 (DESIGN §7): one module per resource. Handlers parse, check
//! who may act, call the store and scheduler, and map errors through
//! [`ApiError`].

mod artifacts;
mod error;
mod extract;
mod health;
mod logs;
pub mod metrics;
mod signing;
mod tokens;
mod work_requests;
mod worker_session;
mod workers;
mod workflows;

pub use error::ApiError;
pub use extract::ApiJson;

use crate::state::AppState;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use kiln_shared::{PROTOCOL_HEADER, PROTOCOL_VERSION};

pub fn router(state: AppState) -> Router {
    let http_metrics = std::sync::Arc::new(metrics::HttpMetrics::default());
    Router::new()
        .merge(health::routes())
        .merge(workers::routes())
        .merge(worker_session::routes())
        .merge(work_requests::routes())
        .merge(logs::routes())
        .merge(artifacts::routes())
        .merge(tokens::routes())
        .merge(workflows::routes())
        .merge(signing::routes())
        .merge(metrics::routes(http_metrics.clone()))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "method not allowed here")
        })
        .layer(middleware::from_fn(check_protocol))
        .layer(middleware::from_fn_with_state(http_metrics, metrics::track))
        .with_state(state)
}

/// An agent speaking another protocol version gets 426 naming both.
async fn check_protocol(req: Request, next: Next) -> Response {
    if let Some(value) = req.headers().get(PROTOCOL_HEADER) {
        let theirs = value.to_str().unwrap_or("?").trim().to_owned();
        if theirs != PROTOCOL_VERSION.to_string() {
            return ApiError::protocol_mismatch(&theirs).into_response();
        }
    }
    next.run(req).await
}

/// Token names follow the worker-name rules.
pub fn validate_token_name(name: &str) -> Result<(), anyhow::Error> {
    workers::validate_name(name).map_err(|e| anyhow::anyhow!(e.message))
}
