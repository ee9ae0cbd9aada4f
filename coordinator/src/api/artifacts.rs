//! Artifacts: declare, upload files (streamed, size and sha256 checked),
//! read, list with data filters, download.

use super::extract::{page, parse_id, ApiPath, QueryParams};
use super::{ApiError, ApiJson};
use crate::auth::Principal;
use crate::files::UploadError;
use crate::state::AppState;
use crate::store::sqlite::EMPTY_SHA256;
use crate::store::ArtifactFilter;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_shared::artifact::{Artifact, NewArtifact};
use kiln_shared::Page;
use std::collections::HashSet;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/1/artifacts", post(create).get(list))
        .route("/api/1/artifacts/{id}", get(show))
        .route("/api/1/artifacts/{id}/files/{*path}", get(download).put(upload))
}

/// A file path inside an artifact: relative, no `.`/`..`/empty components,
/// no control characters or backslashes.
pub fn validate_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid-path", format!("invalid file path {path:?}: {why}"));
    if path.is_empty() || path.len() > 1024 {
        return Err(bad("must be 1-1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative"));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(bad("control characters and backslashes are not allowed"));
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(bad("empty, '.' and '..' components are not allowed"));
    }
    Ok(())
}

fn validate_new(new: &NewArtifact) -> Result<(), ApiError> {
    let category_ok = !new.category.is_empty()
        && new.category.len() <= 128
        && new.category.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'));
    if !category_ok {
        return Err(ApiError::bad_request(
            "invalid-category",
            format!("category {:?} must be 1-128 of letters, digits, ':', '-', '_', '.'", new.category),
        ));
    }
    let mut seen = HashSet::new();
    for f in &new.files {
        validate_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(ApiError::bad_request("duplicate-path", format!("file {:?} is declared twice", f.path)));
        }
        if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return Err(ApiError::bad_request(
                "invalid-sha256",
                format!("sha256 of {:?} must be 64 lowercase hex digits", f.path),
            ));
        }
        // No upload could ever complete such a file: refuse it now.
        if f.size == 0 && f.sha256 != EMPTY_SHA256 {
            return Err(ApiError::bad_request(
                "invalid-sha256",
                format!("file {:?} is declared empty, so its sha256 must be that of no bytes, {EMPTY_SHA256}", f.path),
            ));
        }
        if f.size > 0 && f.sha256 == EMPTY_SHA256 {
            return Err(ApiError::bad_request(
                "invalid-sha256",
                format!("file {:?} declares {} bytes but the sha256 of no bytes", f.path, f.size),
            ));
        }
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(new): ApiJson<NewArtifact>,
) -> Result<(StatusCode, Json<Artifact>), ApiError> {
    match &who {
        Principal::Admin(_) | Principal::User(_) => {}
        Principal::Worker(w) => {
            if let Some(id) = new.work_request {
                let name = w.name.clone();
                if !state.db(move |s| s.worker_has_attempt(id, &name, None)).await? {
                    return Err(ApiError::forbidden(format!("work request {id} is not this worker's")));
                }
            }
        }
        Principal::Enrollment(_) => return Err(ApiError::forbidden("enrollment tokens only register workers")),
    }
    validate_new(&new)?;
    if let Some(id) = new.work_request {
        if state.db(move |s| s.work_request(id)).await?.is_none() {
            return Err(ApiError::bad_request("unknown-work-request", format!("work request {id} does not exist")));
        }
    }
    let by = who.display_name();
    let artifact = state.db(move |s| s.create_artifact(&new, &by)).await?;
    Ok((StatusCode::CREATED, Json(artifact)))
}

/// Load an artifact the caller may read: users all; a worker those it made
/// or that the work it runs names.
async fn readable(state: &AppState, who: &Principal, id: i64) -> Result<Artifact, ApiError> {
    let artifact = state
        .db(move |s| s.artifact(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact {id} not found")))?;
    match who {
        Principal::Admin(_) | Principal::User(_) => Ok(artifact),
        Principal::Worker(w) => {
            if artifact.created_by.as_deref() == Some(who.display_name().as_str()) {
                return Ok(artifact);
            }
            let name = w.name.clone();
            let needed = state.db(move |s| s.artifacts_needed_by_worker(&name)).await?;
            if needed.contains(&id) {
                Ok(artifact)
            } else {
                Err(ApiError::forbidden(format!("artifact {id} is not needed by this worker's work")))
            }
        }
        Principal::Enrollment(_) => Err(ApiError::forbidden("enrollment tokens only register workers")),
    }
}

async fn show(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Artifact>, ApiError> {
    let id = parse_id(&id, "artifact")?;
    readable(&state, &who, id).await.map(Json)
}

async fn list(State(state): State<AppState>, who: Principal, uri: Uri) -> Result<Json<Page<Artifact>>, ApiError> {
    match who {
        Principal::Admin(_) | Principal::User(_) | Principal::Worker(_) => {}
        Principal::Enrollment(_) => return Err(ApiError::forbidden("enrollment tokens only register workers")),
    }
    let mut q = QueryParams::from_uri(&uri)?;
    let category = q.take("category");
    let (limit, before) = q.page(50, 500)?;
    let mut data: Vec<(String, String)> = q.0.drain().collect();
    data.sort();
    if let Some((key, _)) = data.iter().find(|(k, _)| k.chars().any(|c| c == '"' || c == '\\' || c.is_control())) {
        return Err(ApiError::bad_request("invalid-query", format!("{key:?} cannot be a data key")));
    }
    let filter = ArtifactFilter { category, data, before, limit };
    let items = state.db(move |s| s.list_artifacts(&filter)).await?;
    Ok(Json(page(items, limit, |a| a.id)))
}

async fn upload(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Json<Artifact>, ApiError> {
    let id = parse_id(&id, "artifact")?;
    validate_path(&path)?;
    let artifact = readable(&state, &who, id).await?;
    if !who.is_admin() && artifact.created_by.as_deref() != Some(who.display_name().as_str()) {
        return Err(ApiError::forbidden(format!("only the creator of artifact {id} uploads its files")));
    }
    let spec = artifact
        .files
        .iter()
        .find(|f| f.path == path)
        .ok_or_else(|| ApiError::not_found(format!("artifact {id} declares no file {path:?}")))?;
    if spec.complete {
        return Ok(Json(artifact)); // already here: an upload retried after a lost reply
    }
    let stream = req.into_body().into_data_stream();
    state.files.receive(stream, spec.size, &spec.sha256).await.map_err(|e| match e {
        UploadError::TooLarge { .. } | UploadError::SizeMismatch { .. } => {
            ApiError::bad_request("size-mismatch", e.to_string())
        }
        UploadError::HashMismatch { .. } => ApiError::bad_request("sha256-mismatch", e.to_string()),
        UploadError::Body(_) => ApiError::bad_request("bad-body", e.to_string()),
        UploadError::Io(_) => ApiError::internal(e.to_string()),
    })?;
    let artifact = state.db(move |s| s.mark_file_complete(id, &path)).await?;
    Ok(Json(artifact))
}

async fn download(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "artifact")?;
    validate_path(&path)?;
    let artifact = readable(&state, &who, id).await?;
    let spec = artifact
        .files
        .iter()
        .find(|f| f.path == path)
        .ok_or_else(|| ApiError::not_found(format!("artifact {id} has no file {path:?}")))?;
    if !spec.complete {
        return Err(ApiError::conflict(
            "file-incomplete",
            format!("file {path:?} of artifact {id} has not been uploaded yet"),
        ));
    }
    let file = tokio::fs::File::open(state.files.blob_path(&spec.sha256))
        .await
        .map_err(|e| ApiError::internal(format!("failed to open stored file {path:?} of artifact {id}: {e}")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, spec.size.to_string()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::{validate_new, validate_path, EMPTY_SHA256};
    use kiln_shared::artifact::{FileSpec, NewArtifact};

    fn with_file(size: u64, sha256: &str) -> NewArtifact {
        let file = FileSpec { path: "f".into(), size, sha256: sha256.into() };
        NewArtifact { category: "test:x".into(), data: Default::default(), files: vec![file], work_request: None }
    }

    #[test]
    fn empty_files_and_the_empty_hash_go_together() {
        let other = "a".repeat(64);
        assert!(validate_new(&with_file(0, EMPTY_SHA256)).is_ok());
        assert!(validate_new(&with_file(1, &other)).is_ok());
        assert_eq!(validate_new(&with_file(0, &other)).map_err(|e| e.code), Err("invalid-sha256".into()));
        assert_eq!(validate_new(&with_file(1, EMPTY_SHA256)).map_err(|e| e.code), Err("invalid-sha256".into()));
    }

    #[test]
    fn paths() {
        for ok in ["a", "dir/file.deb", "x..y", ".hidden"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "./a", "a\\b", "a\nb"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }
}
