//! Request parsing that answers bad input with a clear JSON 4xx: bodies
//! (malformed, unknown fields, wrong types, too large), ids and queries.

use super::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// A JSON body, capped at `max_json_body` bytes. Content-Type is not
/// required: `curl -d` sends a form type and that is no reason to fail.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_json_body;
        let bytes = read_body(req.into_body(), limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("invalid-json", "the request body is empty; a JSON object is expected"));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::bad_request("invalid-json", format!("invalid request body: {e}{}", near(&bytes, &e)))
        })
    }
}

/// The body text around where parsing failed, so that a message such as
/// "expected value at line 1 column 33" shows which key was wrong.
fn near(body: &[u8], e: &serde_json::Error) -> String {
    if e.line() == 0 {
        return String::new();
    }
    let line_start: usize = body.split(|b| *b == b'\n').take(e.line() - 1).map(|l| l.len() + 1).sum();
    let at = (line_start + e.column()).min(body.len());
    let excerpt = String::from_utf8_lossy(&body[at.saturating_sub(32)..at]);
    let excerpt = excerpt.trim();
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(" (near {excerpt:?})")
    }
}

/// Path parameters. One that does not decode (e.g. `%FF`, not UTF-8) is a
/// JSON 400 like any other bad input, not axum's plain-text rejection.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(ApiError::bad_request("invalid-url", e.body_text())),
        }
    }
}

/// The whole body, or 413 past `limit` bytes.
pub async fn read_body(body: Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if is_limit {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request("bad-body", format!("failed to read the request body: {e}"))
        }
    })
}

/// A numeric id from the path; anything else is 400, an unknown id 404 later.
pub fn parse_id(text: &str, what: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("{text:?} is not a valid {what} id")))
}

/// Query parameters, with typed getters that name the parameter on error.
#[derive(Debug, Default)]
pub struct QueryParams(pub HashMap<String, String>);

impl QueryParams {
    pub fn from_uri(uri: &axum::http::Uri) -> Result<Self, ApiError> {
        let query = uri.query().unwrap_or("");
        serde_urlencoded_pairs(query).map(QueryParams)
    }

    pub fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key).filter(|v| !v.is_empty())
    }

    pub fn take_parsed<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<Option<T>, ApiError> {
        self.take(key)
            .map(|v| v.parse().map_err(|_| ApiError::bad_request("invalid-query", format!("?{key}={v} is not {what}"))))
            .transpose()
    }

    /// `limit` (1..=max, default `default`) and the opaque `cursor`.
    pub fn page(&mut self, default: u32, max: u32) -> Result<(u32, Option<i64>), ApiError> {
        let limit = self.take_parsed::<u32>("limit", "a positive integer")?.unwrap_or(default);
        if limit == 0 || limit > max {
            return Err(ApiError::bad_request("invalid-query", format!("?limit must be between 1 and {max}")));
        }
        let cursor = self.take_parsed::<i64>("cursor", "a cursor from a previous page")?;
        Ok((limit, cursor))
    }

    /// Refuse parameters nobody consumed.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            Some(key) => Err(ApiError::bad_request("invalid-query", format!("unknown query parameter {key:?}"))),
            None => Ok(()),
        }
    }
}

fn serde_urlencoded_pairs(query: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("invalid-query", format!("badly encoded query text {s:?}"));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The `Page` envelope with the cursor of the last item when the page is full.
pub fn page<T>(items: Vec<T>, limit: u32, id_of: impl Fn(&T) -> i64) -> kiln_shared::Page<T> {
    let next = if items.len() == limit as usize { items.last().map(|i| id_of(i).to_string()) } else { None };
    kiln_shared::Page { items, next }
}

#[cfg(test)]
mod tests {
    use super::near;

    fn error_of(body: &str) -> serde_json::Error {
        serde_json::from_str::<std::collections::BTreeMap<String, u8>>(body).expect_err("invalid")
    }

    #[test]
    fn near_shows_the_text_before_the_error() {
        let body = r#"{"task_name": 1, "task_type": x}"#;
        assert_eq!(near(body.as_bytes(), &error_of(body)), r#" (near "{\"task_name\": 1, \"task_type\": x")"#);
        let body = "{\n\"a\": 1,\n\"b\": \"no\"}";
        assert!(near(body.as_bytes(), &error_of(body)).contains(r#"\"b\": \"no\""#));
        assert_eq!(near(b"", &error_of("")), "");
    }
}
