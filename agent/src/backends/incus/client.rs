//! A small client of Incus's REST API over its unix socket (hyper, one
//! HTTP/1.1 connection per request). It knows the API's envelope
//! (`sync`/`async`/`error` responses), waits for background operations and
//! opens the operation websockets that exec streams output over.
//!
//! Ref: https://linuxcontainers.org/incus/docs/main/rest-api/

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// Where Incus listens unless `INCUS_SOCKET` or `INCUS_DIR` say otherwise.
pub const DEFAULT_SOCKET: &str = "/var/lib/incus/unix.socket";

/// A request body: streamed from a file or a few bytes.
pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum IncusError {
    #[error("failed to connect to Incus at {socket}: {source}")]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("failed to talk to Incus ({what}): {message}")]
    Http { what: String, message: String },
    #[error("Incus refused {what}: {message} (HTTP {status})")]
    Api { what: String, status: u16, message: String },
    #[error("Incus operation {what} failed: {message}")]
    Operation { what: String, message: String },
    #[error("failed to {what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl IncusError {
    /// Is this Incus saying the thing does not exist?
    pub fn is_not_found(&self) -> bool {
        matches!(self, IncusError::Api { status: 404, .. })
    }
    pub fn is_conflict(&self) -> bool {
        matches!(self, IncusError::Api { status: 409, .. })
    }
}

/// A connection factory for one Incus daemon and project.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// Appended as `project=` to every request (None: the default project).
    project: Option<String>,
}

/// The socket of the local Incus daemon.
pub fn default_socket() -> PathBuf {
    if let Some(s) = std::env::var_os("INCUS_SOCKET") {
        return PathBuf::from(s);
    }
    match std::env::var_os("INCUS_DIR") {
        Some(dir) => Path::new(&dir).join("unix.socket"),
        None => PathBuf::from(DEFAULT_SOCKET),
    }
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

pub fn json_body(value: &Value) -> Body {
    Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}).boxed()
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, project: Option<String>) -> Self {
        Client { socket: socket.into(), project }
    }

    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The same daemon, another project.
    pub fn in_project(&self, project: Option<String>) -> Self {
        Client { socket: self.socket.clone(), project }
    }

    /// `path` with this client's project added to its query.
    pub fn url(&self, path: &str) -> String {
        match &self.project {
            Some(p) if path.contains('?') => format!("{path}&project={p}"),
            Some(p) => format!("{path}?project={p}"),
            None => path.to_owned(),
        }
    }

    async fn connect(&self) -> Result<UnixStream, IncusError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| IncusError::Connect { socket: self.socket.clone(), source })
    }

    /// Send one request (the path already has its query); the raw response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Response<Incoming>, IncusError> {
        let what = format!("{method} {path}");
        let http = |e: &dyn std::fmt::Display| IncusError::Http { what: what.clone(), message: e.to_string() };
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| http(&e))?;
        tokio::spawn(async move {
            // Errors surface on the request itself.
            let _ = conn.await;
        });
        let mut request = Request::builder().method(method.clone()).uri(path).header("Host", "incus");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(body).map_err(|e| http(&e))?;
        sender.send_request(request).await.map_err(|e| http(&e))
    }

    /// A JSON request; the response's `metadata` (sync) or the operation
    /// path (async), errors turned into [`IncusError::Api`].
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, IncusError> {
        let url = self.url(path);
        let headers = [("Content-Type", "application/json".to_owned())];
        let body = body.map(json_body).unwrap_or_else(empty);
        let response = self.send(method.clone(), &url, &headers, body).await?;
        reply(&format!("{method} {path}"), response).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, IncusError> {
        Ok(self.call(Method::GET, path, None).await?.metadata)
    }

    /// Run a request that starts an operation and wait for it to end.
    pub async fn run(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, IncusError> {
        let reply = self.call(method.clone(), path, body).await?;
        match reply.operation {
            Some(op) => self.wait(&op, &format!("{method} {path}"), None).await,
            None => Ok(reply.metadata),
        }
    }

    /// Wait for the operation at `op` (`/1.0/operations/<id>`); its
    /// metadata on success. `timeout`: give up waiting after it.
    pub async fn wait(&self, op: &str, what: &str, timeout: Option<Duration>) -> Result<Value, IncusError> {
        let secs = timeout.map(|t| t.as_secs().max(1) as i64).unwrap_or(-1);
        let path = format!("{op}/wait?timeout={secs}");
        let url = self.url(&path);
        let response = self.send(Method::GET, &url, &[], empty()).await?;
        let operation = reply(&format!("wait for {what}"), response).await?.metadata;
        match operation.get("status_code").and_then(Value::as_u64) {
            Some(200) => Ok(operation.get("metadata").cloned().unwrap_or(Value::Null)),
            _ => Err(IncusError::Operation {
                what: what.to_owned(),
                message: operation
                    .get("err")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("status {}", operation.get("status").unwrap_or(&Value::Null))),
            }),
        }
    }

    /// Open the websocket of operation `op` with `secret`.
    pub async fn websocket(
        &self,
        op: &str,
        secret: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<UnixStream>, IncusError> {
        let stream = self.connect().await?;
        let url = format!("ws://incus{}", self.url(&format!("{op}/websocket?secret={secret}")));
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| IncusError::Http { what: format!("websocket of {op}"), message: e.to_string() })?;
        Ok(ws)
    }
}

/// A decoded Incus response.
#[derive(Debug)]
pub struct Reply {
    pub metadata: Value,
    /// For `async` responses: the operation's path.
    pub operation: Option<String>,
}

/// Read a response body as Incus's JSON envelope.
pub async fn reply(what: &str, response: Response<Incoming>) -> Result<Reply, IncusError> {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| IncusError::Http { what: what.to_owned(), message: e.to_string() })?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::json!({"type": "error", "error": String::from_utf8_lossy(&bytes).trim(), "error_code": status.as_u16()})
    });
    if value.get("type").and_then(Value::as_str) == Some("error")
        || status.is_client_error()
        || status.is_server_error()
    {
        let code = value.get("error_code").and_then(Value::as_u64).map(|c| c as u16).unwrap_or(status.as_u16());
        let message = value.get("error").and_then(Value::as_str).unwrap_or("no message").to_owned();
        return Err(IncusError::Api { what: what.to_owned(), status: code, message });
    }
    let operation = (status == StatusCode::ACCEPTED || value.get("type").and_then(Value::as_str) == Some("async"))
        .then(|| value.get("operation").and_then(Value::as_str).map(str::to_owned))
        .flatten();
    Ok(Reply { metadata: value.get("metadata").cloned().unwrap_or(Value::Null), operation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_project() {
        let c = Client::new("/x", Some("kiln-abc".into()));
        assert_eq!(c.url("/1.0/images"), "/1.0/images?project=kiln-abc");
        assert_eq!(c.url("/1.0/images?recursion=1"), "/1.0/images?recursion=1&project=kiln-abc");
        assert_eq!(c.in_project(None).url("/1.0"), "/1.0");
    }
}
