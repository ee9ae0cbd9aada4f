//! Workflow templates and template-based submissions (DESIGN §9):
//! `PUT /api/1/workflow-templates/{name}` (admin), `GET` them (user), and
//! `POST /api/1/workflows {template, task_data}` → 201 with the root work
//! request.

use super::extract::ApiPath;
use super::work_requests::check_environment;
use super::{ApiError, ApiJson};
use crate::auth::Principal;
use crate::state::AppState;
use crate::store::NewWork;
use crate::tasks;
use crate::workflows::{submit, templates, StoreLookup, Submitter, WorkflowError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kiln_shared::work::WorkRequest;
use kiln_shared::workflow::{NewWorkflow, WorkflowTemplate, WorkflowTemplateSpec};
use kiln_shared::{Page, TaskType};
use serde_json::{Map, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/workflow-templates", get(list))
        .route("/api/1/workflow-templates/{name}", put(put_template).get(show))
        .route("/api/1/workflows", post(submit_workflow))
}

/// Refusals name the key: `not-allowed` for a template's allowed lists,
/// `invalid-task-data` for what the workflow itself refuses.
fn refused(e: WorkflowError) -> ApiError {
    match e {
        WorkflowError::NotAllowed { message, .. } => ApiError::bad_request("not-allowed", message),
        WorkflowError::Forbidden { message, .. } => ApiError::forbidden(message),
        WorkflowError::Store(e) => e.into(),
        other => ApiError::bad_request("invalid-task-data", other.to_string()),
    }
}

async fn put_template(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(spec): ApiJson<WorkflowTemplateSpec>,
) -> Result<(StatusCode, Json<WorkflowTemplate>), ApiError> {
    who.require_admin()?;
    templates::validate_template(&name, &spec).map_err(|e| ApiError::bad_request("invalid-template", e.to_string()))?;
    let (stored, created) = state.db(move |s| s.put_template(&name, &spec)).await?;
    tracing::info!(template = %stored.name, workflow = %stored.task_name, created, "workflow template stored");
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(stored)))
}

async fn list(State(state): State<AppState>, who: Principal) -> Result<Json<Page<WorkflowTemplate>>, ApiError> {
    who.require_user()?;
    let items = state.db(|s| s.list_templates()).await?;
    Ok(Json(Page { items, next: None }))
}

async fn show(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<WorkflowTemplate>, ApiError> {
    who.require_user()?;
    let wanted = name.clone();
    let template = state.db(move |s| s.template(&wanted)).await?;
    template.map(Json).ok_or_else(|| ApiError::not_found(format!("workflow template {name:?} not found")))
}

async fn submit_workflow(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<NewWorkflow>,
) -> Result<(StatusCode, Json<WorkRequest>), ApiError> {
    who.require_user()?;
    if body.priority > 0 && !who.is_admin() {
        return Err(ApiError::forbidden("only admins may raise a priority above the template's"));
    }
    let name = body.template.clone();
    let template = state
        .db(move |s| s.template(&name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow template {:?} not found", body.template)))?;
    let sub = submit::prepare(&template, &body).map_err(refused)?;
    let submitter = Submitter { user: who.display_name(), template: Some(template.name.clone()) };
    check_submission(&state, &sub.task_name, &sub.task_data, submitter).await?;
    let validated = tasks::validate(TaskType::Workflow, &sub.task_name, &sub.task_data)
        .map_err(|e| ApiError::bad_request(e.code, e.message))?;
    if let Some(env) = validated.environment {
        check_environment(&state, env, None).await?;
    }
    let work = NewWork {
        task_type: TaskType::Workflow,
        task_name: sub.task_name,
        task_data: sub.task_data,
        workflow_data: sub.workflow_data,
        dependencies: Vec::new(),
        parent: None,
        priority: sub.priority_base,
        priority_adjustment: sub.priority_adjustment,
        created_by: who.display_name(),
        requirements: None,
        max_retries: tasks::DEFAULT_MAX_RETRIES,
    };
    let (wr, effects) = state.db(move |s| s.create_work_request(work)).await?;
    state.apply(&effects);
    tracing::info!(id = wr.id, template = %template.name, workflow = %wr.task_name, "workflow submitted");
    Ok((StatusCode::CREATED, Json(wr)))
}

/// The orchestrator's checks that need the store (artifacts it names exist,
/// the submitter may use a signing key): refused submissions create nothing.
pub(super) async fn check_submission(
    state: &AppState,
    workflow: &str,
    data: &Map<String, Value>,
    submitter: Submitter,
) -> Result<(), ApiError> {
    let Some(orchestrator) = crate::workflows::orchestrator(workflow) else {
        return Ok(());
    };
    let data = data.clone();
    let checked = state.db(move |s| Ok(orchestrator.check_submission(&data, &submitter, &StoreLookup(s)))).await?;
    checked.map_err(refused)
}
