//! Work requests: create, read, list, abort, retry, complete, add
//! dependencies.

use super::extract::{page, parse_id, ApiPath, QueryParams};
use super::{ApiError, ApiJson};
use crate::auth::Principal;
use crate::state::AppState;
use crate::store::{CompletionArgs, NewWork, WorkFilter};
use crate::tasks;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_shared::work::{AddDependencies, Completion, NewWorkRequest, WorkRequest};
use kiln_shared::{Page, TaskType, WorkStatus};
use serde_json::Value;

/// Automatic retries of `error` (DESIGN §3).
pub const DEFAULT_MAX_RETRIES: u32 = tasks::DEFAULT_MAX_RETRIES;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/work-requests", post(create).get(list))
        .route("/api/1/work-requests/{id}", get(show))
        .route("/api/1/work-requests/{id}/abort", post(abort))
        .route("/api/1/work-requests/{id}/retry", post(retry))
        .route("/api/1/work-requests/{id}/complete", post(complete))
        .route("/api/1/work-requests/{id}/dependencies", post(add_dependencies))
}

async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(new): ApiJson<NewWorkRequest>,
) -> Result<(StatusCode, Json<WorkRequest>), ApiError> {
    who.require_user()?;
    if new.priority > 0 && !who.is_admin() {
        return Err(ApiError::forbidden("only admins may raise a priority above 0"));
    }
    if new.task_type == TaskType::Server && !who.is_admin() {
        return Err(ApiError::forbidden("only admins create server tasks directly"));
    }
    // Only a submission through a template records its name (and allowed
    // lists): signing keys trust workflows by the template they came from.
    if let Some(key) = ["workflow_template", "allowed"].into_iter().find(|k| new.workflow_data.contains_key(*k)) {
        if !who.is_admin() {
            return Err(ApiError::forbidden(format!(
                "workflow_data.{key} is set by the coordinator when a workflow is started from a template"
            )));
        }
    }
    super::signing::authorize(&state, &who, &new).await?;
    let validated = tasks::validate(new.task_type, &new.task_name, &new.task_data)
        .map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let workflow_data = tasks::workflow_data(new.task_type, &new.task_name, new.workflow_data)
        .map_err(|e| ApiError::bad_request(e.code, e.message))?;
    if let Some(parent) = new.parent {
        // Only the workflow's owner (or an admin) adds to it.
        if let Some(p) = state.db(move |s| s.work_request(parent)).await? {
            require_owner(&who, &p)?;
        }
    }
    if new.task_type == TaskType::Workflow {
        let submitter = crate::workflows::Submitter { user: who.display_name(), template: None };
        super::workflows::check_submission(&state, &new.task_name, &new.task_data, submitter).await?;
    }
    let mut requirements = validated.requirements;
    if let Some(env) = validated.environment {
        check_environment(&state, env, requirements.as_mut()).await?;
    }
    let work = NewWork {
        task_type: new.task_type,
        task_name: new.task_name,
        task_data: new.task_data,
        workflow_data,
        dependencies: new.dependencies,
        parent: new.parent,
        priority: new.priority,
        priority_adjustment: 0,
        created_by: who.display_name(),
        requirements,
        max_retries: DEFAULT_MAX_RETRIES,
    };
    let (wr, effects) = state.db(move |s| s.create_work_request(work)).await?;
    state.apply(&effects);
    tracing::info!(id = wr.id, task = %wr.task_name, status = %wr.status, "work request created");
    Ok((StatusCode::CREATED, Json(wr)))
}

/// An environment must be a system tarball or image; its architecture
/// fills in the requirement when the task names none.
pub(super) async fn check_environment(
    state: &AppState,
    env: i64,
    requirements: Option<&mut crate::scheduler::requirements::Requirements>,
) -> Result<(), ApiError> {
    let artifact = state.db(move |s| s.artifact(env)).await?.ok_or_else(|| {
        ApiError::bad_request("unknown-artifact", format!("environment artifact {env} does not exist"))
    })?;
    if !matches!(artifact.category.as_str(), "kiln:system-tarball" | "kiln:system-image") {
        return Err(ApiError::bad_request(
            "invalid-environment",
            format!("artifact {env} is a {}, not a kiln:system-tarball or kiln:system-image", artifact.category),
        ));
    }
    if let (Some(req), Some(arch)) = (requirements, artifact.data.get("architecture").and_then(Value::as_str)) {
        req.architecture.get_or_insert_with(|| arch.to_owned());
    }
    Ok(())
}

/// Load a request the caller may see: users see all, a worker only what it
/// holds or held.
async fn visible(state: &AppState, who: &Principal, id: i64) -> Result<WorkRequest, ApiError> {
    let wr = state
        .db(move |s| s.work_request(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("work request {id} not found")))?;
    match who {
        Principal::Admin(_) | Principal::User(_) => Ok(wr),
        Principal::Worker(w) => {
            let name = w.name.clone();
            if state.db(move |s| s.worker_has_attempt(id, &name, None)).await? {
                Ok(wr)
            } else {
                Err(ApiError::forbidden(format!("work request {id} is not this worker's")))
            }
        }
        Principal::Enrollment(_) => Err(ApiError::forbidden("enrollment tokens only register workers")),
    }
}

async fn show(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WorkRequest>, ApiError> {
    let id = parse_id(&id, "work request")?;
    visible(&state, &who, id).await.map(Json)
}

async fn list(State(state): State<AppState>, who: Principal, uri: Uri) -> Result<Json<Page<WorkRequest>>, ApiError> {
    who.require_user()?;
    let mut q = QueryParams::from_uri(&uri)?;
    let status = q.take_parsed::<WorkStatus>("status", "a status (blocked, pending, running, completed, aborted)")?;
    let task_name = q.take("task_name");
    let parent = q.take_parsed::<i64>("parent", "a work request id")?;
    let (limit, before) = q.page(50, 500)?;
    q.finish()?;
    let filter = WorkFilter { status, task_name, parent, before, limit };
    let items = state.db(move |s| s.list_work_requests(&filter)).await?;
    Ok(Json(page(items, limit, |wr| wr.id)))
}

/// Creator or admin may abort, retry, or add dependencies.
fn require_owner(who: &Principal, wr: &WorkRequest) -> Result<(), ApiError> {
    who.require_user()?;
    if who.is_admin() || wr.created_by.as_deref() == Some(who.display_name().as_str()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("work request {} belongs to another user", wr.id)))
    }
}

/// A delay ends by itself (an admin may end it early); other wait tasks
/// are completed by their creator or an admin, nobody else.
fn may_complete_wait(who: &Principal, wr: &WorkRequest) -> Result<(), ApiError> {
    if wr.task_name == "delay" && !who.is_admin() {
        who.require_user()?;
        return Err(ApiError::forbidden(format!(
            "work request {} is a delay: it completes by itself at its delay_until (an admin may end it early)",
            wr.id
        )));
    }
    require_owner(who, wr)
}

async fn abort(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WorkRequest>, ApiError> {
    let id = parse_id(&id, "work request")?;
    require_owner(&who, &visible(&state, &who, id).await?)?;
    let (wr, effects) = state.db(move |s| s.abort_work_request(id, "user")).await?;
    state.apply(&effects);
    tracing::info!(id, by = %who.display_name(), "work request aborted");
    Ok(Json(wr))
}

async fn retry(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WorkRequest>, ApiError> {
    let id = parse_id(&id, "work request")?;
    require_owner(&who, &visible(&state, &who, id).await?)?;
    let (wr, effects) = state.db(move |s| s.retry_work_request(id)).await?;
    state.apply(&effects);
    tracing::info!(id, attempt = wr.attempt, "work request retried");
    Ok(Json(wr))
}

async fn add_dependencies(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddDependencies>,
) -> Result<Json<WorkRequest>, ApiError> {
    let id = parse_id(&id, "work request")?;
    require_owner(&who, &visible(&state, &who, id).await?)?;
    let (wr, effects) = state.db(move |s| s.add_dependencies(id, &body.dependencies)).await?;
    state.apply(&effects);
    Ok(Json(wr))
}

async fn complete(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Completion>,
) -> Result<Json<WorkRequest>, ApiError> {
    let id = parse_id(&id, "work request")?;
    let wr = visible(&state, &who, id).await?;
    let worker = match &who {
        Principal::Worker(w) => Some(w.name.clone()),
        _ if wr.task_type == TaskType::Wait => {
            may_complete_wait(&who, &wr)?;
            None
        }
        _ => return Err(ApiError::forbidden(format!("only the worker running work request {id} may complete it"))),
    };
    let args = CompletionArgs {
        worker,
        attempt: body.attempt,
        result: body.result,
        output_data: body.output_data.unwrap_or_default(),
    };
    let (wr, effects) = state.db(move |s| s.complete(id, args)).await?;
    state.apply(&effects);
    if let Err(e) = super::signing::on_complete(&state, &wr).await {
        tracing::error!(id, error = ?e, "failed to record the generated signing key");
    }
    tracing::info!(id, status = %wr.status, result = ?wr.result, attempt = wr.attempt, "completion recorded");
    Ok(Json(wr))
}
