//! Task logs (DESIGN §6a): idempotent append of seq-numbered JSON lines by
//! the worker, and reading or following them as JSON lines.

use super::extract::{parse_id, read_body, ApiPath, QueryParams};
use super::ApiError;
use crate::auth::Principal;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kiln_shared::work::{LogAck, LogLine, LogStream};
use serde::Deserialize;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/1/work-requests/{id}/log", post(append).get(read))
}

/// A line as the agent sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingLine {
    seq: u64,
    ts: DateTime<Utc>,
    stream: LogStream,
    text: String,
}

/// Parse a body of JSON lines; seqs start at 1 and increase.
fn parse_lines(body: &[u8]) -> Result<Vec<LogLine>, ApiError> {
    let mut lines = Vec::new();
    let mut last = 0;
    for (n, raw) in body.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: IncomingLine = serde_json::from_slice(raw)
            .map_err(|e| ApiError::bad_request("invalid-log-line", format!("line {} of the body: {e}", n + 1)))?;
        if line.seq == 0 || line.seq <= last {
            return Err(ApiError::bad_request(
                "invalid-log-line",
                format!("line {}: seq {} does not increase (seqs start at 1)", n + 1, line.seq),
            ));
        }
        last = line.seq;
        lines.push(LogLine { seq: line.seq, ts: line.ts, stream: line.stream, text: line.text, attempt: None });
    }
    Ok(lines)
}

async fn append(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> Result<Json<LogAck>, ApiError> {
    let id = parse_id(&id, "work request")?;
    let mut q = QueryParams::from_uri(req.uri())?;
    let attempt = q
        .take_parsed::<u32>("attempt", "an attempt number")?
        .ok_or_else(|| ApiError::bad_request("invalid-query", "?attempt=N is required"))?;
    q.finish()?;
    let name = who.require_worker()?.name.clone();
    let (exists, holds) =
        state.db(move |s| Ok((s.work_request(id)?.is_some(), s.worker_has_attempt(id, &name, Some(attempt))?))).await?;
    if !exists {
        return Err(ApiError::not_found(format!("work request {id} not found")));
    }
    if !holds {
        return Err(ApiError::forbidden(format!("attempt {attempt} of work request {id} is not this worker's")));
    }
    let body = read_body(req.into_body(), state.config.max_log_body).await?;
    let lines = parse_lines(&body)?;
    let cap = state.config.log_cap;
    let ack = state.db(move |s| s.append_log(id, attempt, &lines, cap)).await?;
    state.log_activity.notify_waiters();
    Ok(Json(ack))
}

/// Where a reader is in the log.
struct Cursor {
    state: AppState,
    id: i64,
    attempt: Option<u32>,
    follow: bool,
    after: i64,
    /// The request had ended at the last look: one more read, then stop.
    ending: bool,
}

const BATCH: u32 = 1000;

impl Cursor {
    /// The next chunk of JSON lines; `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        loop {
            let woken = self.state.log_activity.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (id, after) = (self.id, self.after);
            let lines = match self.state.db(move |s| s.log_lines(id, after, BATCH)).await {
                Ok(lines) => lines,
                Err(e) => return Some(Err(e)),
            };
            if let Some((pos, _)) = lines.last() {
                self.after = *pos;
                let mut out = Vec::new();
                for (_, line) in lines.iter().filter(|(_, l)| self.attempt.is_none() || l.attempt == self.attempt) {
                    if let Ok(mut json) = serde_json::to_vec(line) {
                        out.append(&mut json);
                        out.push(b'\n');
                    }
                }
                if out.is_empty() {
                    continue;
                }
                return Some(Ok(out));
            }
            if !self.follow || self.ending {
                return None;
            }
            let finished = match self.state.db(move |s| s.work_request(id)).await {
                Ok(wr) => wr.is_none_or(|wr| wr.status.is_final()),
                Err(e) => return Some(Err(e)),
            };
            if finished {
                // Lines stored just before the end may still be unread.
                self.ending = true;
                continue;
            }
            // The timeout covers a wake-up lost to a dropped notification.
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
        }
    }
}

async fn read(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "work request")?;
    let mut q = QueryParams::from_uri(req.uri())?;
    let follow = q.take_parsed::<bool>("follow", "true or false")?.unwrap_or(false);
    let attempt = q.take_parsed::<u32>("attempt", "an attempt number")?;
    q.finish()?;
    match &who {
        Principal::Admin(_) | Principal::User(_) => {}
        Principal::Worker(w) => {
            let name = w.name.clone();
            if !state.db(move |s| s.worker_has_attempt(id, &name, None)).await? {
                return Err(ApiError::forbidden(format!("work request {id} is not this worker's")));
            }
        }
        Principal::Enrollment(_) => return Err(ApiError::forbidden("enrollment tokens only register workers")),
    }
    if state.db(move |s| s.work_request(id)).await?.is_none() {
        return Err(ApiError::not_found(format!("work request {id} not found")));
    }
    let cursor = Cursor { state, id, attempt, follow, after: 0, ending: false };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        let chunk = c.next_chunk().await?;
        Some((chunk.map_err(|e| std::io::Error::other(e.message)), c))
    });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}
