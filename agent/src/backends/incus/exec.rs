//! Running the task's command in its container through the exec API: the
//! output streams over the operation's websockets into the task's log as
//! it comes; stdin is closed at once; a stop (abort, timeout) sends SIGTERM
//! over the control websocket and, after a grace period, force-stops the
//! container, which ends every process in it.
//!
//! Ref: https://linuxcontainers.org/incus/docs/main/rest-api-spec/ (exec)

use super::client::{Client, IncusError};
use crate::backends::spec::TaskSpec;
use crate::supervisor::logfile::{LogWriter, MAX_LINE};
use crate::supervisor::task_dir::Outcome;
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use kiln_shared::work::LogStream;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const POLL: Duration = Duration::from_millis(50);

/// Why the shim wants the task to stop, checked while it runs.
pub trait StopCheck {
    fn stop_requested(&self) -> bool;
}

/// Splits a byte stream into log lines (as the unshare shim's pump does).
struct Lines {
    stream: LogStream,
    pending: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, log: &LogWriter, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let rest = self.pending.split_off(pos + 1);
            self.pending.pop();
            log.line(self.stream, &String::from_utf8_lossy(&self.pending));
            self.pending = rest;
        }
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            log.line(self.stream, &String::from_utf8_lossy(&self.pending));
            self.pending = rest;
        }
    }
    fn finish(self, log: &LogWriter) {
        if !self.pending.is_empty() {
            log.line(self.stream, &String::from_utf8_lossy(&self.pending));
        }
    }
}

fn environment(spec: &TaskSpec) -> Map<String, Value> {
    spec.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect()
}

/// Run the command; how it ended and its exit code.
pub async fn exec(
    client: &Client,
    instance: &str,
    spec: &TaskSpec,
    log: &LogWriter,
    stop: &dyn StopCheck,
    deadline: Instant,
    grace: Duration,
) -> Result<(Outcome, Option<i32>), IncusError> {
    let body = json!({
        "command": spec.args,
        "environment": environment(spec),
        "cwd": spec.cwd,
        "user": 0,
        "group": 0,
        "interactive": false,
        "wait-for-websocket": true,
        "record-output": false,
    });
    let what = format!("exec in {instance}");
    let reply = client.call(Method::POST, &format!("/1.0/instances/{instance}/exec"), Some(&body)).await?;
    let op =
        reply.operation.ok_or_else(|| IncusError::Operation { what: what.clone(), message: "no operation".into() })?;
    let fds = reply.metadata.pointer("/metadata/fds").cloned().unwrap_or(Value::Null);
    let secret = |fd: &str| {
        fds.get(fd).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| IncusError::Operation {
            what: what.clone(),
            message: format!("no websocket secret for fd {fd}"),
        })
    };
    let mut control = client.websocket(&op, &secret("control")?).await?;
    let mut stdin = client.websocket(&op, &secret("0")?).await?;
    let stdout = client.websocket(&op, &secret("1")?).await?;
    let stderr = client.websocket(&op, &secret("2")?).await?;
    // No input: the command sees end-of-file at once.
    let _ = stdin.close(None).await;
    let readers = [(stdout, LogStream::Stdout), (stderr, LogStream::Stderr)].map(|(mut ws, stream)| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = Lines { stream, pending: Vec::new() };
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Binary(b) => lines.feed(&log, &b),
                    Message::Text(t) => lines.feed(&log, t.as_bytes()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            lines.finish(&log);
        })
    });
    let waiter = {
        let (client, op, what) = (client.clone(), op.clone(), what.clone());
        tokio::spawn(async move { client.wait(&op, &what, None).await })
    };
    let mut outcome = Outcome::Exited;
    let mut stop_at: Option<Instant> = None;
    let mut forced = false;
    while !waiter.is_finished() {
        if stop_at.is_none() {
            let reason = if stop.stop_requested() {
                Some((Outcome::Aborted, "stopping the task: it was aborted".to_owned()))
            } else if Instant::now() >= deadline {
                Some((
                    Outcome::TimedOut,
                    format!("stopping the task: it exceeded its timeout of {} s", spec.timeout_secs),
                ))
            } else {
                None
            };
            if let Some((why, message)) = reason {
                log.kiln(&message);
                outcome = why;
                let signal = json!({"command": "signal", "signal": libc::SIGTERM});
                let _ = control.send(Message::Text(signal.to_string().into())).await;
                stop_at = Some(Instant::now() + grace);
            }
        }
        if let Some(at) = stop_at {
            if !forced && Instant::now() >= at {
                log.kiln("the task did not stop within the grace period: stopping its container");
                let force = json!({"action": "stop", "force": true});
                let _ = client.run(Method::PUT, &format!("/1.0/instances/{instance}/state"), Some(&force)).await;
                forced = true;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let result = waiter.await.map_err(|e| IncusError::Operation { what: what.clone(), message: e.to_string() })?;
    for reader in readers {
        // The streams close with the command; do not wait long for a straggler.
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let _ = control.close(None).await;
    match result {
        Ok(meta) => Ok((outcome, meta.get("return").and_then(Value::as_i64).map(|c| c as i32))),
        // Force-stopped under it: the stop is the outcome, not an error.
        Err(_) if outcome != Outcome::Exited => Ok((outcome, None)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log.jsonl");
        let log = LogWriter::create(&path).expect("log");
        let mut lines = Lines { stream: LogStream::Stdout, pending: Vec::new() };
        lines.feed(&log, b"one\ntw");
        lines.feed(&log, b"o\nthree");
        lines.finish(&log);
        let text = std::fs::read_to_string(&path).expect("read");
        let got: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json")["text"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(got, ["one", "two", "three"]);
    }
}
