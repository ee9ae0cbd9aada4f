//! `kiln artifact download ID [-o DIR] [--file PATH]...`: stream each file
//! to `DIR/PATH.part` with a progress bar, check its size and sha256
//! against the artifact's declaration, then rename it into place.

use super::Ctx;
use crate::cli::DownloadArgs;
use crate::error::CliError;
use crate::{output, progress};
use futures_util::StreamExt;
use indicatif::ProgressBar;
use kiln_shared::artifact::ArtifactFile;
use kiln_shared::client::ClientError;
use kiln_shared::exit;
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncWriteExt;

pub async fn run(ctx: &Ctx, args: DownloadArgs) -> Result<u8, CliError> {
    let artifact = ctx.api(ctx.client.artifact(args.id)).await?;
    let wanted: Vec<&ArtifactFile> = if args.files.is_empty() {
        artifact.files.iter().collect()
    } else {
        let mut wanted = Vec::new();
        for path in &args.files {
            let file = artifact.files.iter().find(|f| &f.path == path).ok_or_else(|| CliError::Client {
                message: format!("artifact {} has no file {path:?}", artifact.id),
                code: crate::error::code::DATAERR,
                kind: "not-found",
            })?;
            wanted.push(file);
        }
        wanted
    };
    let targets = wanted.iter().map(|f| target(&args.output, f, args.force)).collect::<Result<Vec<_>, _>>()?;
    let bar = progress::bytes(wanted.iter().map(|f| f.size).sum(), ctx.quiet);
    for (file, dest) in wanted.iter().zip(&targets) {
        bar.set_message(file.path.clone());
        fetch(ctx, artifact.id, file, dest, &bar).await?;
    }
    bar.finish_and_clear();
    if ctx.json {
        let files: Vec<_> = wanted
            .iter()
            .zip(&targets)
            .map(|(f, dest)| serde_json::json!({"path": f.path, "size": f.size, "sha256": f.sha256, "local": dest}))
            .collect();
        output::json(&serde_json::json!({"artifact": artifact.id, "files": files}))?;
    } else {
        for dest in &targets {
            output::line(&dest.display().to_string())?;
        }
    }
    Ok(exit::SUCCESS)
}

/// Where a file goes: under `dir`, never outside it, not over an existing
/// file unless `force`.
fn target(dir: &Path, file: &ArtifactFile, force: bool) -> Result<PathBuf, CliError> {
    let relative = Path::new(&file.path);
    if file.path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(CliError::Corrupt(format!("refusing to write file {:?}: not a plain relative path", file.path)));
    }
    let dest = dir.join(relative);
    if !force && dest.exists() {
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists (--force overwrites)");
        return Err(CliError::WriteFile { path: dest, source });
    }
    Ok(dest)
}

async fn fetch(ctx: &Ctx, id: i64, file: &ArtifactFile, dest: &Path, bar: &ProgressBar) -> Result<(), CliError> {
    let write_err = |source| CliError::WriteFile { path: dest.to_path_buf(), source };
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(write_err)?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let resp = ctx.api(ctx.client.download_file(id, &file.path)).await?;
    let mut out = tokio::fs::File::create(&part).await.map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|source| ctx.error(ClientError::Transport { url: ctx.client.base_url().to_owned(), source }))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        out.write_all(&chunk).await.map_err(write_err)?;
    }
    out.flush().await.map_err(write_err)?;
    drop(out);
    let sha256 = hex::encode(hasher.finalize());
    if size != file.size || sha256 != file.sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(CliError::Corrupt(format!(
            "download of {:?} from artifact {id} is corrupt: got {size} bytes with sha256 {sha256}, \
             expected {} bytes with sha256 {}",
            file.path, file.size, file.sha256
        )));
    }
    tokio::fs::rename(&part, dest).await.map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ArtifactFile {
        ArtifactFile { path: path.into(), size: 0, sha256: String::new(), complete: true }
    }

    #[test]
    fn targets_stay_inside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(target(dir.path(), &file("a/b.deb"), false).expect("ok"), dir.path().join("a/b.deb"));
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(target(dir.path(), &file(bad), false).is_err(), "{bad:?}");
        }
        std::fs::write(dir.path().join("exists"), b"x").expect("write");
        assert_eq!(target(dir.path(), &file("exists"), false).expect_err("exists").exit_code(), 73);
        assert!(target(dir.path(), &file("exists"), true).is_ok());
    }
}
