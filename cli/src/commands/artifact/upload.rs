//! `kiln artifact upload -c CATEGORY [-d DATA] PATH...`: hash the files,
//! declare the artifact, then stream each file with a progress bar.

use super::Ctx;
use crate::cli::UploadArgs;
use crate::error::CliError;
use crate::{input, output, progress};
use futures_util::StreamExt;
use indicatif::ProgressBar;
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::exit;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub async fn run(ctx: &Ctx, args: UploadArgs) -> Result<u8, CliError> {
    let data = args.data.map(|d| input::json_object("--data", &d)).transpose()?.unwrap_or_default();
    let files = collect(&args.paths)?;
    let artifact = send(ctx, args.category, data, args.work_request, &files).await?;
    let total: u64 = files.values().map(|(_, size)| size).sum();
    if ctx.json {
        output::json(&artifact)?;
    } else {
        output::line(&format!(
            "artifact {} ({}): {} files, {} uploaded",
            artifact.id,
            artifact.category,
            artifact.files.len(),
            output::size(total)
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// Artifact path -> (local file, size).
pub type Files = BTreeMap<String, (PathBuf, u64)>;

/// Hash `files`, declare the artifact and stream them, with progress bars.
pub async fn send(
    ctx: &Ctx,
    category: String,
    data: serde_json::Map<String, serde_json::Value>,
    work_request: Option<i64>,
    files: &Files,
) -> Result<kiln_shared::artifact::Artifact, CliError> {
    let total = files.values().map(|(_, size)| size).sum();
    let bar = progress::bytes(total, ctx.quiet);
    let mut specs = Vec::with_capacity(files.len());
    for (path, (local, _)) in files {
        bar.set_message(format!("hashing {path}"));
        let (size, sha256) = hash_file(local, &bar)?;
        specs.push(FileSpec { path: path.clone(), size, sha256 });
    }
    bar.finish_and_clear();
    let new = NewArtifact { category, data, files: specs, work_request };
    let mut artifact = ctx.api(ctx.client.create_artifact(&new)).await?;
    let bar = progress::bytes(total, ctx.quiet);
    for (path, (local, _)) in files {
        bar.set_message(path.clone());
        let file =
            tokio::fs::File::open(local).await.map_err(|source| CliError::ReadFile { path: local.clone(), source })?;
        let counter = bar.clone();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.inc(bytes.len() as u64);
            }
        });
        artifact = ctx.api(ctx.client.upload_file(artifact.id, path, reqwest::Body::wrap_stream(body))).await?;
    }
    bar.finish_and_clear();
    Ok(artifact)
}

/// Artifact path -> (local file, size). A file is stored under its base
/// name; a directory's files under their paths relative to it.
fn collect(paths: &[PathBuf]) -> Result<BTreeMap<String, (PathBuf, u64)>, CliError> {
    let mut files = BTreeMap::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| CliError::ReadFile { path: path.clone(), source })?;
        if meta.is_dir() {
            walk(path, "", &mut files)?;
        } else {
            let name = utf8_name(path)?;
            add(&mut files, name, path.clone(), meta.len())?;
        }
    }
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, files: &mut BTreeMap<String, (PathBuf, u64)>) -> Result<(), CliError> {
    let read_err = |source| CliError::ReadFile { path: dir.to_path_buf(), source };
    let mut entries = std::fs::read_dir(dir).map_err(read_err)?.collect::<Result<Vec<_>, _>>().map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = format!("{prefix}{}", utf8_name(&path)?);
        let meta = std::fs::metadata(&path).map_err(|source| CliError::ReadFile { path: path.clone(), source })?;
        if meta.is_dir() {
            walk(&path, &format!("{name}/"), files)?;
        } else {
            add(files, name, path, meta.len())?;
        }
    }
    Ok(())
}

fn add(files: &mut BTreeMap<String, (PathBuf, u64)>, name: String, path: PathBuf, size: u64) -> Result<(), CliError> {
    if let Some((other, _)) = files.get(&name) {
        return Err(CliError::usage(format!(
            "{} and {} would both be stored as {name:?}",
            other.display(),
            path.display()
        )));
    }
    files.insert(name, (path, size));
    Ok(())
}

fn utf8_name(path: &Path) -> Result<String, CliError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| CliError::usage(format!("{}: file names must be UTF-8", path.display())))
}

/// Size and hex sha256 of a file, advancing `bar` as it is read.
pub fn hash_file(path: &Path, bar: &ProgressBar) -> Result<(u64, String), CliError> {
    let read_err = |source| CliError::ReadFile { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        bar.inc(n as u64);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_by_base_name_and_directories_by_relative_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("out");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::write(tree.join("a.deb"), b"a").expect("write");
        std::fs::write(tree.join("sub/b.txt"), b"bb").expect("write");
        let single = dir.path().join("single.dsc");
        std::fs::write(&single, b"ccc").expect("write");
        let files = collect(&[tree.clone(), single.clone()]).expect("collect");
        let names: Vec<_> = files.iter().map(|(k, (_, size))| (k.as_str(), *size)).collect();
        assert_eq!(names, vec![("a.deb", 1), ("single.dsc", 3), ("sub/b.txt", 2)]);
        let dup = collect(&[tree.join("a.deb"), tree.join("a.deb")]).expect_err("duplicate");
        assert_eq!(dup.exit_code(), 64);
        let (size, sha) = hash_file(&single, &ProgressBar::hidden()).expect("hash");
        assert_eq!(size, 3);
        assert_eq!(sha, "64daa44ad493ff28a96effab6e77f1732a3d97d83241581b37dbd70a7a4900fe");
    }
}
