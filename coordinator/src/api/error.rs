//! One error type for every handler, mapped to a status and the
//! `{"error", "message"}` body of DESIGN §7.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_shared::{ErrorBody, PROTOCOL_VERSION};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_owned(), message: message.into() }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn worker_disabled(name: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "worker-disabled",
            format!("worker {name:?} is registered but disabled: an admin must enable it"),
        )
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", format!("the request body exceeds {limit} bytes"))
    }
    pub fn protocol_mismatch(theirs: &str) -> Self {
        Self::new(
            StatusCode::UPGRADE_REQUIRED,
            "protocol-mismatch",
            format!("the client speaks Kiln protocol {theirs}, this coordinator speaks protocol {PROTOCOL_VERSION}"),
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict { code, message } => ApiError::conflict(code, message),
            StoreError::Invalid { code, message } => ApiError::bad_request(code, message),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        }
        (self.status, Json(ErrorBody { error: self.code, message: self.message })).into_response()
    }
}
