//! Who is calling: the `Authorization: Token <t>` header resolved to an
//! admin, a user, an enrollment token or a registered worker, and the role
//! checks handlers make.

pub mod tokens;

use crate::api::ApiError;
use crate::state::AppState;
use crate::store::{TokenRole, WorkerRecord};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kiln_shared::WorkerRole;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    Admin(String),
    User(String),
    Enrollment(String),
    Worker(WorkerRecord),
}

impl Principal {
    /// Name recorded as `created_by`; workers are `worker/<name>`.
    pub fn display_name(&self) -> String {
        match self {
            Principal::Admin(n) | Principal::User(n) | Principal::Enrollment(n) => n.clone(),
            Principal::Worker(w) => format!("worker/{}", w.name),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin(_))
    }

    /// Admins and users.
    pub fn require_user(&self) -> Result<&str, ApiError> {
        match self {
            Principal::Admin(n) | Principal::User(n) => Ok(n),
            _ => Err(ApiError::forbidden("this needs a user or admin token")),
        }
    }

    pub fn require_admin(&self) -> Result<&str, ApiError> {
        match self {
            Principal::Admin(n) => Ok(n),
            _ => Err(ApiError::forbidden("this needs an admin token")),
        }
    }

    /// A registered worker (either role).
    pub fn require_worker(&self) -> Result<&WorkerRecord, ApiError> {
        match self {
            Principal::Worker(w) => Ok(w),
            _ => Err(ApiError::forbidden("this needs a worker token")),
        }
    }

    /// A worker that may take new work: enabled, or told to wait.
    pub fn require_enabled_worker(&self) -> Result<&WorkerRecord, ApiError> {
        let w = self.require_worker()?;
        if !w.enabled {
            return Err(ApiError::worker_disabled(&w.name));
        }
        Ok(w)
    }

    /// The role name of DESIGN §7.
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Admin(_) => "admin",
            Principal::User(_) => "user",
            Principal::Enrollment(_) => "enrollment",
            Principal::Worker(w) if w.role == WorkerRole::Signing => "signing-worker",
            Principal::Worker(_) => "worker",
        }
    }
}

/// The token in an `Authorization: Token <t>` header, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Token ").or_else(|| value.strip_prefix("Bearer "))?;
    Some(token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            return Err(ApiError::unauthorized("missing Authorization: Token <token> header"));
        };
        let hash = tokens::hash(token);
        state
            .db(move |s| {
                if let Some(t) = s.token_by_hash(&hash)? {
                    return Ok(Some(match t.role {
                        TokenRole::Admin => Principal::Admin(t.name),
                        TokenRole::User => Principal::User(t.name),
                        TokenRole::Enrollment => Principal::Enrollment(t.name),
                    }));
                }
                Ok(s.worker_by_token(&hash)?.map(Principal::Worker))
            })
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
    }
}
