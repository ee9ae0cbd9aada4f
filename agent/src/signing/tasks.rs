//! The signing tasks themselves: `generate_key` and `sign`. Each returns the
//! result and `output_data` to report; files go up as artifacts.

use super::gpg::{GpgError, KeyStore};
use chrono::Utc;
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::{Client, ClientError};
use kiln_shared::work::WorkRequest;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Gpg(#[from] GpgError),
    #[error("failed to talk to the coordinator: {0}")]
    Api(#[from] ClientError),
    #[error("failed to {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl SigningError {
    pub fn code(&self) -> &'static str {
        match self {
            SigningError::Gpg(GpgError::UnknownKey(_)) => "unknown-key",
            SigningError::Gpg(_) => "gpg-failed",
            SigningError::Api(_) => "coordinator-unavailable",
            SigningError::Io { .. } => "io-error",
            SigningError::Invalid(_) => "invalid-task-data",
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SigningError + 'a {
    move |source| SigningError::Io { what, path: path.to_owned(), source }
}

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a str, SigningError> {
    data.get(key).and_then(Value::as_str).ok_or_else(|| SigningError::Invalid(format!("task_data.{key} is required")))
}

/// `generate_key {purpose, description}`: a new key in the store, its public
/// half uploaded as a `kiln:signing-key` artifact.
pub async fn generate_key(
    data_dir: &Path,
    client: &Client,
    wr: &WorkRequest,
) -> Result<Map<String, Value>, SigningError> {
    let purpose = text(&wr.task_data, "purpose")?;
    let description = wr.task_data.get("description").and_then(Value::as_str).unwrap_or("");
    let store = KeyStore::open(data_dir)?;
    let clean: String =
        description.chars().filter(|c| !matches!(c, '<' | '>' | '(' | ')') && !c.is_control()).collect();
    let uid = format!("Kiln signing key {} ({}) <kiln-signing@localhost>", wr.id, clean.trim());
    let (fpr, public) = store.generate(&uid, &format!("{}-{}", wr.id, wr.attempt)).await?;
    let data = json!({"fingerprint": fpr, "purpose": purpose, "description": description});
    let name = format!("{fpr}.asc");
    let artifact = upload(client, "kiln:signing-key", data, wr.id, &[(name, public)]).await?;
    Ok(json!({"fingerprint": fpr, "purpose": purpose, "public_key_artifact": artifact})
        .as_object()
        .cloned()
        .unwrap_or_default())
}

/// `sign {key, unsigned}`: a detached armoured signature over each file of
/// artifact `unsigned`, uploaded as a `kiln:signature` artifact; each one is
/// appended to `<data-dir>/audit.jsonl`.
pub async fn sign(data_dir: &Path, client: &Client, wr: &WorkRequest) -> Result<Map<String, Value>, SigningError> {
    let key = text(&wr.task_data, "key")?;
    let unsigned = wr
        .task_data
        .get("unsigned")
        .and_then(Value::as_i64)
        .ok_or_else(|| SigningError::Invalid("task_data.unsigned is required".into()))?;
    let store = KeyStore::open(data_dir)?;
    let work = data_dir.join("signing").join(format!("{}-{}", wr.id, wr.attempt));
    let _ = std::fs::remove_dir_all(&work);
    let artifact = client.artifact(unsigned).await?;
    let mut signatures = Vec::new();
    let mut signed = Vec::new();
    for f in &artifact.files {
        if !is_safe(&f.path) {
            return Err(SigningError::Invalid(format!("artifact {unsigned} names an unsafe path {:?}", f.path)));
        }
        let input = work.join("in").join(&f.path);
        let bytes =
            client.download_file(unsigned, &f.path).await?.bytes().await.map_err(|source| ClientError::Decode {
                url: format!("artifact {unsigned} file {}", f.path),
                source,
            })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if sha256 != f.sha256 {
            return Err(SigningError::Invalid(format!("{} does not match its sha256", f.path)));
        }
        write(&input, &bytes)?;
        let out = work.join("out").join(format!("{}.asc", f.path));
        write(&out, b"")?;
        std::fs::remove_file(&out).map_err(io("prepare", &out))?;
        store.sign(key, &input, &out).await?;
        audit(
            data_dir,
            &json!({
                "time": Utc::now().to_rfc3339(), "work_request": wr.id, "requested_by": wr.created_by,
                "key": key, "artifact": unsigned, "file": f.path, "sha256": sha256,
            }),
        )?;
        let sig = std::fs::read(&out).map_err(io("read", &out))?;
        signatures.push((format!("{}.asc", f.path), sig));
        signed.push(json!({"file": f.path, "sha256": sha256}));
    }
    let data = json!({"key": key, "unsigned": unsigned});
    let id = upload(client, "kiln:signature", data, wr.id, &signatures).await?;
    let _ = std::fs::remove_dir_all(&work);
    let out = json!({"fingerprint": key, "signature_artifact": id, "signed": signed});
    Ok(out.as_object().cloned().unwrap_or_default())
}

/// Download every file of artifact `id` under `dir`, checking each sha256.
async fn fetch(client: &Client, id: i64, dir: &Path) -> Result<Vec<(String, PathBuf, String)>, SigningError> {
    let artifact = client.artifact(id).await?;
    let mut files = Vec::new();
    for f in &artifact.files {
        if !is_safe(&f.path) {
            return Err(SigningError::Invalid(format!("artifact {id} names an unsafe path {:?}", f.path)));
        }
        let resp = client.download_file(id, &f.path).await?;
        let url = format!("artifact {id} file {}", f.path);
        let bytes = resp.bytes().await.map_err(|source| ClientError::Decode { url, source })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if sha256 != f.sha256 {
            return Err(SigningError::Invalid(format!("{} does not match its sha256", f.path)));
        }
        let path = dir.join(&f.path);
        write(&path, &bytes)?;
        files.push((f.path.clone(), path, sha256));
    }
    Ok(files)
}

/// `md5sum`/`sha1sum` of a file (coreutils; Kiln's own digests are sha256).
async fn coreutils_sum(tool: &str, path: &Path) -> Result<String, SigningError> {
    let out = tokio::process::Command::new(tool).arg(path).output().await.map_err(io("run", Path::new(tool)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if out.status.success() => Ok(sum.to_owned()),
        _ => Err(SigningError::Invalid(format!("{tool} failed on {}", path.display()))),
    }
}

/// `debsign {key, unsigned}` over a `kiln:upload` artifact (see
/// [`super::debsign`]); each signed file is audited.
pub async fn debsign(data_dir: &Path, client: &Client, wr: &WorkRequest) -> Result<Map<String, Value>, SigningError> {
    let key = text(&wr.task_data, "key")?;
    let unsigned = wr.task_data.get("unsigned").and_then(Value::as_i64);
    let unsigned = unsigned.ok_or_else(|| SigningError::Invalid("task_data.unsigned is required".into()))?;
    let upload_artifact = client.artifact(unsigned).await?;
    if upload_artifact.category != "kiln:upload" {
        return Err(SigningError::Invalid(format!("artifact {unsigned} is not a kiln:upload")));
    }
    let store = KeyStore::open(data_dir)?;
    let work = data_dir.join("signing").join(format!("{}-{}", wr.id, wr.attempt));
    let _ = std::fs::remove_dir_all(&work);
    let files = fetch(client, unsigned, &work).await?;
    let mut new_sums = std::collections::BTreeMap::new();
    let mut signed = Vec::new();
    for (name, path, sha256) in files.iter().filter(|(n, _, _)| super::debsign::signs_in_place(n)) {
        store.clearsign_in_place(key, path).await?;
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        let (md5, sha1) = (coreutils_sum("md5sum", path).await?, coreutils_sum("sha1sum", path).await?);
        let base = name.rsplit('/').next().unwrap_or(name).to_owned();
        new_sums.insert(base, super::debsign::Sums::of(&bytes, md5, sha1));
        signed.push(json!({"file": name, "sha256": sha256}));
    }
    for (name, path, sha256) in files.iter().filter(|(n, _, _)| n.ends_with(".changes")) {
        let text = std::fs::read_to_string(path).map_err(io("read", path))?;
        if text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(SigningError::Invalid(format!("{name} is already signed")));
        }
        write(path, super::debsign::update_changes(&text, &new_sums).as_bytes())?;
        store.clearsign_in_place(key, path).await?;
        signed.push(json!({"file": name, "sha256": sha256}));
    }
    if signed.is_empty() {
        return Err(SigningError::Invalid(format!("artifact {unsigned} has no .dsc, .buildinfo or .changes")));
    }
    for entry in &signed {
        audit(
            data_dir,
            &json!({
                "time": Utc::now().to_rfc3339(), "work_request": wr.id, "requested_by": wr.created_by,
                "key": key, "artifact": unsigned, "file": entry["file"], "sha256": entry["sha256"], "task": "debsign",
            }),
        )?;
    }
    let mut contents = Vec::new();
    for (name, path, _) in &files {
        contents.push((name.clone(), std::fs::read(path).map_err(io("read", path))?));
    }
    let mut data = upload_artifact.data.clone();
    data.insert("signed_by".into(), Value::from(key));
    let id = upload(client, "kiln:upload", Value::Object(data), wr.id, &contents).await?;
    let _ = std::fs::remove_dir_all(&work);
    let out = json!({"fingerprint": key, "signed_upload": id, "signed": signed});
    Ok(out.as_object().cloned().unwrap_or_default())
}

/// A relative path with no `..`, as artifact paths must be.
fn is_safe(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SigningError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    std::fs::write(path, bytes).map_err(io("write", path))
}

fn audit(data_dir: &Path, entry: &Value) -> Result<(), SigningError> {
    let path = data_dir.join("audit.jsonl");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?;
    writeln!(f, "{entry}").and_then(|()| f.sync_data()).map_err(io("append to", &path))
}

async fn upload(
    client: &Client,
    category: &str,
    data: Value,
    work_request: i64,
    files: &[(String, Vec<u8>)],
) -> Result<i64, SigningError> {
    let specs = files
        .iter()
        .map(|(path, b)| FileSpec { path: path.clone(), size: b.len() as u64, sha256: hex::encode(Sha256::digest(b)) })
        .collect();
    let data = data.as_object().cloned().unwrap_or_default();
    let new = NewArtifact { category: category.to_owned(), data, files: specs, work_request: Some(work_request) };
    let artifact = client.create_artifact(&new).await?;
    for (path, bytes) in files {
        client.upload_file(artifact.id, path, bytes.clone()).await?;
    }
    Ok(artifact.id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(super::is_safe("a/b.dsc") && super::is_safe("x.changes"));
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "./a"] {
            assert!(!super::is_safe(bad), "{bad}");
        }
    }
}
