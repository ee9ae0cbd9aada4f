//! Turning a finished task's files into artifacts: the output directory
//! (`$KILN_OUTPUT`) and the log. The output directory was written by
//! untrusted code: symlinks are never followed and only regular files are
//! taken, so a task cannot make the agent upload a host file.

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::{Client, ClientError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Most files taken from one output directory.
const MAX_FILES: usize = 10_000;

/// Regular files under `root` (relative paths), never through a symlink.
pub fn collect_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let entries = match std::fs::read_dir(root.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?; // does not follow symlinks
            let name = rel.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(name);
            } else if kind.is_file() {
                let Some(text) = name.to_str().map(str::to_owned) else { continue };
                files.push((text, root.join(&name)));
                if files.len() >= MAX_FILES {
                    return Ok(files);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Size and sha256 of a file opened without following a final symlink.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to upload: {0}")]
    Api(#[from] ClientError),
}

/// Create an artifact of `files` and upload them; `None` when there are none.
pub async fn upload(
    client: &Client,
    category: &str,
    data: Map<String, Value>,
    work_request: i64,
    files: &[(String, PathBuf)],
) -> Result<Option<i64>, UploadError> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(files.len());
    for (name, path) in files {
        let (size, sha256) = digest(path).map_err(|source| UploadError::Read { path: path.clone(), source })?;
        specs.push(FileSpec { path: name.clone(), size, sha256 });
    }
    let new = NewArtifact { category: category.to_owned(), data, files: specs, work_request: Some(work_request) };
    let artifact = client.create_artifact(&new).await?;
    for (name, path) in files {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .await
            .map_err(|source| UploadError::Read { path: path.clone(), source })?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        client.upload_file(artifact.id, name, body).await?;
    }
    Ok(Some(artifact.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_follows_symlinks_out_of_the_output_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("sub")).expect("mkdir");
        std::fs::write(out.join("a.txt"), "a").expect("write");
        std::fs::write(out.join("sub/b.txt"), "b").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", out.join("passwd")).expect("symlink");
        std::os::unix::fs::symlink("/etc", out.join("etc")).expect("symlink");
        let files = collect_files(&out).expect("collect");
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
        assert!(digest(&out.join("passwd")).is_err(), "O_NOFOLLOW refuses a symlink");
        assert_eq!(collect_files(&dir.path().join("missing")).expect("missing").len(), 0);
    }
}
