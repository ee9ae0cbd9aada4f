//! The typed REST v1 client used by the agent, the CLI and the tests.

use crate::artifact::{Artifact, NewArtifact};
use crate::protocol::{ErrorBody, Health, Page, PROTOCOL_HEADER, PROTOCOL_VERSION};
use crate::work::{AddDependencies, Completion, LogAck, LogLine, NewWorkRequest, WorkRequest, WorkRequestId};
use crate::worker::{Heartbeat, HeartbeatReply, Registration, Worker};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered with an error body.
    #[error("{status}: {} ({})", .body.message, .body.error)]
    Api { status: StatusCode, body: ErrorBody },
    #[error("failed to reach {url}: {}", causes(source))]
    Transport { url: String, source: reqwest::Error },
    #[error("failed to read the reply from {url}: {source}")]
    Decode { url: String, source: reqwest::Error },
    #[error("invalid server URL {0:?}")]
    BadUrl(String),
    /// The CA certificate file given to trust the coordinator is unusable.
    #[error("cannot use the CA certificate {path}: {reason}")]
    CaCertificate { path: PathBuf, reason: String },
}

/// An error and its causes on one line: reqwest's own message leaves out
/// why (e.g. "invalid peer certificate: UnknownIssuer").
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let message = next.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = next.source();
    }
    text
}

/// The certificates of a PEM file (a bundle may hold several).
pub fn load_ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let fail = |reason: String| ClientError::CaCertificate { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if certificates.is_empty() {
        return Err(fail("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned()));
    }
    Ok(certificates)
}

impl ClientError {
    /// The HTTP status, when the coordinator answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The machine-readable error code, when the coordinator gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.error),
            _ => None,
        }
    }
}

/// Filters for `GET /api/1/work-requests`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkRequestFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<WorkRequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A REST v1 client bound to one server and one token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:8080`.
    /// An `https://` server must have a certificate the system trusts
    /// (Mozilla's roots or the host's CA store).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca_certificate(base, token, None)
    }

    /// [`Client::new`], also trusting the CA certificates (PEM) in
    /// `ca_certificate`: a lab's own CA need not be installed host-wide.
    pub fn with_ca_certificate(
        base: &str,
        token: Option<String>,
        ca_certificate: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = ca_certificate {
            for certificate in load_ca_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|source| ClientError::Transport { url: base.clone(), source })?;
        Ok(Client { http, base, token })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`) with auth and protocol headers.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Token {token}"));
        }
        req
    }

    /// Send and turn an error status into [`ClientError::Api`].
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let url = self.base.clone();
        let resp = req.send().await.map_err(|source| ClientError::Transport { url, source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
            error: "http".to_owned(),
            message: if text.is_empty() { status.to_string() } else { text },
        });
        Err(ClientError::Api { status, body })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let url = self.base.clone();
        self.send(req).await?.json().await.map_err(|source| ClientError::Decode { url, source })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, "/api/1/health")).await
    }

    // --- workers -----------------------------------------------------------

    pub async fn register(&self, reg: &Registration) -> Result<Worker, ClientError> {
        self.json(self.request(Method::POST, "/api/1/workers/register").json(reg)).await
    }

    pub async fn workers(&self) -> Result<Page<Worker>, ClientError> {
        self.json(self.request(Method::GET, "/api/1/workers")).await
    }

    /// `action` is `enable` or `disable`.
    pub async fn worker_action(&self, name: &str, action: &str) -> Result<Worker, ClientError> {
        let path = format!("/api/1/workers/{name}/{action}");
        self.json(self.request(Method::POST, &path)).await
    }

    /// One worker by name (`GET /api/1/workers/{name}`).
    pub async fn worker(&self, name: &str) -> Result<Worker, ClientError> {
        let path = format!("/api/1/workers/{}", encode_path(name));
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn delete_worker(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/1/workers/{name}");
        self.send(self.request(Method::DELETE, &path)).await.map(drop)
    }

    pub async fn set_static_metadata(&self, name: &str, metadata: &Map<String, Value>) -> Result<Worker, ClientError> {
        let path = format!("/api/1/workers/{name}/static-metadata");
        self.json(self.request(Method::PUT, &path).json(metadata)).await
    }

    pub async fn put_metadata(&self, metadata: &Map<String, Value>) -> Result<Worker, ClientError> {
        self.json(self.request(Method::PUT, "/api/1/worker/metadata").json(metadata)).await
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        self.json(self.request(Method::POST, "/api/1/worker/heartbeat").json(hb)).await
    }

    /// Long-poll for work: `None` when nothing came within `wait`.
    pub async fn next(&self, wait: Duration) -> Result<Option<WorkRequest>, ClientError> {
        let path = format!("/api/1/worker/next?wait={}", wait.as_secs());
        let resp = self.send(self.request(Method::POST, &path)).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let url = self.base.clone();
        resp.json().await.map(Some).map_err(|source| ClientError::Decode { url, source })
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/1/tokens/{name}");
        self.send(self.request(Method::DELETE, &path)).await.map(drop)
    }

    // --- work requests -----------------------------------------------------

    pub async fn create_work_request(&self, new: &NewWorkRequest) -> Result<WorkRequest, ClientError> {
        self.json(self.request(Method::POST, "/api/1/work-requests").json(new)).await
    }

    pub async fn work_request(&self, id: WorkRequestId) -> Result<WorkRequest, ClientError> {
        let path = format!("/api/1/work-requests/{id}");
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn work_requests(&self, filter: &WorkRequestFilter) -> Result<Page<WorkRequest>, ClientError> {
        self.json(self.request(Method::GET, "/api/1/work-requests").query(filter)).await
    }

    /// `action` is `abort` or `retry`.
    pub async fn work_request_action(&self, id: WorkRequestId, action: &str) -> Result<WorkRequest, ClientError> {
        let path = format!("/api/1/work-requests/{id}/{action}");
        self.json(self.request(Method::POST, &path)).await
    }

    pub async fn complete(&self, id: WorkRequestId, completion: &Completion) -> Result<WorkRequest, ClientError> {
        let path = format!("/api/1/work-requests/{id}/complete");
        self.json(self.request(Method::POST, &path).json(completion)).await
    }

    /// Add dependencies to a request that has not started yet.
    pub async fn add_dependencies(
        &self,
        id: WorkRequestId,
        deps: &[WorkRequestId],
    ) -> Result<WorkRequest, ClientError> {
        let path = format!("/api/1/work-requests/{id}/dependencies");
        let body = AddDependencies { dependencies: deps.to_vec() };
        self.json(self.request(Method::POST, &path).json(&body)).await
    }

    /// Append log lines (sent as JSON lines) for one attempt.
    pub async fn append_log(&self, id: WorkRequestId, attempt: u32, lines: &[LogLine]) -> Result<LogAck, ClientError> {
        let mut body = Vec::new();
        for line in lines {
            // Serializing a plain struct of strings and numbers cannot fail.
            if let Ok(mut text) = serde_json::to_vec(line) {
                body.append(&mut text);
                body.push(b'\n');
            }
        }
        let path = format!("/api/1/work-requests/{id}/log?attempt={attempt}");
        self.json(self.request(Method::POST, &path).header("Content-Type", "application/x-ndjson").body(body)).await
    }

    /// The log as a response whose body is JSON lines; with `follow`, the body
    /// stays open until the request ends.
    pub async fn log(&self, id: WorkRequestId, follow: bool) -> Result<Response, ClientError> {
        let path = format!("/api/1/work-requests/{id}/log?follow={follow}");
        self.send(self.request(Method::GET, &path)).await
    }

    /// Like [`Client::log`], limited to one attempt when `attempt` is set.
    pub async fn log_of_attempt(
        &self,
        id: WorkRequestId,
        follow: bool,
        attempt: Option<u32>,
    ) -> Result<Response, ClientError> {
        let mut path = format!("/api/1/work-requests/{id}/log?follow={follow}");
        if let Some(attempt) = attempt {
            path.push_str(&format!("&attempt={attempt}"));
        }
        self.send(self.request(Method::GET, &path)).await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.base.clone();
        let resp = self.send(self.request(Method::GET, "/metrics")).await?;
        resp.text().await.map_err(|source| ClientError::Decode { url, source })
    }

    // --- workflows ---------------------------------------------------------

    /// `PUT /api/1/workflow-templates/{name}` (admin).
    pub async fn put_workflow_template(
        &self,
        name: &str,
        spec: &crate::workflow::WorkflowTemplateSpec,
    ) -> Result<crate::workflow::WorkflowTemplate, ClientError> {
        let path = format!("/api/1/workflow-templates/{}", encode_path(name));
        self.json(self.request(Method::PUT, &path).json(spec)).await
    }

    pub async fn workflow_templates(&self) -> Result<Page<crate::workflow::WorkflowTemplate>, ClientError> {
        self.json(self.request(Method::GET, "/api/1/workflow-templates")).await
    }

    /// `GET /api/1/workflow-templates/{name}`.
    pub async fn workflow_template(&self, name: &str) -> Result<crate::workflow::WorkflowTemplate, ClientError> {
        let path = format!("/api/1/workflow-templates/{}", encode_path(name));
        self.json(self.request(Method::GET, &path)).await
    }

    /// `POST /api/1/workflows`: start a workflow from a template.
    pub async fn create_workflow(&self, new: &crate::workflow::NewWorkflow) -> Result<WorkRequest, ClientError> {
        self.json(self.request(Method::POST, "/api/1/workflows").json(new)).await
    }

    // --- artifacts ---------------------------------------------------------

    pub async fn create_artifact(&self, new: &NewArtifact) -> Result<Artifact, ClientError> {
        self.json(self.request(Method::POST, "/api/1/artifacts").json(new)).await
    }

    pub async fn artifact(&self, id: i64) -> Result<Artifact, ClientError> {
        let path = format!("/api/1/artifacts/{id}");
        self.json(self.request(Method::GET, &path)).await
    }

    /// `query` holds `category`, `cursor`, `limit` and data-key filters.
    pub async fn artifacts(&self, query: &[(&str, &str)]) -> Result<Page<Artifact>, ClientError> {
        self.json(self.request(Method::GET, "/api/1/artifacts").query(query)).await
    }

    pub async fn upload_file(
        &self,
        id: i64,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Artifact, ClientError> {
        let url = format!("/api/1/artifacts/{id}/files/{}", encode_path(path));
        self.json(self.request(Method::PUT, &url).body(body)).await
    }

    /// The file's bytes as a streaming response.
    pub async fn download_file(&self, id: i64, path: &str) -> Result<Response, ClientError> {
        let url = format!("/api/1/artifacts/{id}/files/{}", encode_path(path));
        self.send(self.request(Method::GET, &url)).await
    }
}

/// Percent-encode each segment of a relative path, keeping the slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}
