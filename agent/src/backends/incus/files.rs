//! File push and pull through Incus's file API: the task's `/kiln/output`
//! is created (pushed) before the command runs and pulled into the task
//! directory afterwards. What the container left there was written by
//! untrusted code: only regular files and directories are taken, names are
//! single path components, and nothing on the host is followed or replaced.

use super::client::{empty, reply, Client, IncusError};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Most files pulled from one output directory (as the unshare backend).
const MAX_FILES: usize = 10_000;

fn files_path(instance: &str, path: &str) -> String {
    let mut encoded = String::new();
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => encoded.push(b as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    format!("/1.0/instances/{instance}/files?path={encoded}")
}

/// Create directory `path` (and its parents) owned by root, mode 0755.
pub async fn push_dir(client: &Client, instance: &str, path: &str) -> Result<(), IncusError> {
    let mut current = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        current.push('/');
        current.push_str(part);
        let url = client.url(&files_path(instance, &current));
        let headers = [
            ("X-Incus-type", "directory".to_owned()),
            ("X-Incus-uid", "0".to_owned()),
            ("X-Incus-gid", "0".to_owned()),
            ("X-Incus-mode", "0755".to_owned()),
        ];
        let response = client.send(Method::POST, &url, &headers, empty()).await?;
        if let Err(e) = reply(&format!("create {current} in {instance}"), response).await {
            // It may exist already (an image with /kiln): fine if it is a directory.
            if kind(client, instance, &current).await.ok().as_deref() != Some("directory") {
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn kind(client: &Client, instance: &str, path: &str) -> Result<String, IncusError> {
    let url = client.url(&files_path(instance, path));
    let response = client.send(Method::GET, &url, &[], empty()).await?;
    let kind = response.headers().get("X-Incus-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    reply_or_drain(path, response).await?;
    Ok(kind)
}

async fn reply_or_drain(what: &str, response: hyper::Response<hyper::body::Incoming>) -> Result<(), IncusError> {
    if response.status().is_success() {
        let _ = response.into_body().collect().await;
        return Ok(());
    }
    reply(what, response).await.map(|_| ())
}

/// Copy the tree at `remote` into the existing directory `local`; the
/// number of files taken. Symlinks and special files are skipped.
pub async fn pull_tree(client: &Client, instance: &str, remote: &str, local: &Path) -> Result<usize, IncusError> {
    let mut count = 0;
    let mut stack = vec![(remote.trim_end_matches('/').to_owned(), local.to_owned())];
    while let Some((dir, into)) = stack.pop() {
        let url = client.url(&files_path(instance, &dir));
        let response = client.send(Method::GET, &url, &[], empty()).await?;
        let names = match reply(&format!("list {dir} in {instance}"), response).await {
            Ok(r) => r.metadata,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        for name in names.as_array().into_iter().flatten().filter_map(Value::as_str) {
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                continue;
            }
            let (from, to) = (format!("{dir}/{name}"), into.join(name));
            let url = client.url(&files_path(instance, &from));
            let response = client.send(Method::GET, &url, &[], empty()).await?;
            let kind = response.headers().get("X-Incus-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            match kind.as_str() {
                "directory" => {
                    let _ = response.into_body().collect().await;
                    std::fs::create_dir(&to)
                        .map_err(|source| IncusError::Io { what: format!("create {}", to.display()), source })?;
                    stack.push((from, to));
                }
                "file" if count < MAX_FILES => {
                    save(response, &to).await?;
                    count += 1;
                }
                _ => {
                    let _ = response.into_body().collect().await;
                }
            }
        }
    }
    Ok(count)
}

/// Stream a file's body to a new host file (never through a symlink).
async fn save(response: hyper::Response<hyper::body::Incoming>, to: &Path) -> Result<(), IncusError> {
    let io = |source| IncusError::Io { what: format!("write {}", to.display()), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(to)
        .map_err(io)?;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| IncusError::Http { what: format!("pull {}", to.display()), message: e.to_string() })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_for_the_query() {
        assert_eq!(files_path("k", "/kiln/output/a b&c"), "/1.0/instances/k/files?path=/kiln/output/a%20b%26c");
    }
}
