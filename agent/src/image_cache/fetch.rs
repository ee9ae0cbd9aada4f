//! Getting one image into the cache: look the artifact up, stream its
//! tarball to a temporary file while hashing it, verify the sha256 the
//! artifact declares, unpack it beside its final place and rename it in.
//! Called once per image at a time (the cache's single flight).

use super::error::CacheError;
use super::extract::{self, ExtractStats};
use super::index::{image_dir, sync_dir, temp_path, DOWNLOAD_PREFIX, UNPACK_PREFIX};
use kiln_shared::artifact::{Artifact, ArtifactFile, ArtifactState};
use kiln_shared::client::Client;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// The category the cache unpacks.
pub const TARBALL_CATEGORY: &str = "kiln:system-tarball";
/// The category the cache keeps as downloaded (bootable disk images).
pub const IMAGE_CATEGORY: &str = "kiln:system-image";

/// The tarball of an image artifact: its single file, or the single one
/// whose name contains `.tar`.
pub fn pick_tarball(files: &[ArtifactFile]) -> Option<&ArtifactFile> {
    let name = pick_tarball_name(files.iter().map(|f| f.path.as_str()))?;
    files.iter().find(|f| f.path == name)
}

/// The same choice by file name: the only file, or the only `*.tar*`.
pub fn pick_tarball_name<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let mut all = names.clone();
    if let (Some(only), None) = (all.next(), all.next()) {
        return Some(only);
    }
    let mut tarballs = names.filter(|n| n.rsplit('/').next().is_some_and(|n| n.contains(".tar")));
    match (tarballs.next(), tarballs.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Check that `artifact` is a complete environment tarball; return its file.
pub fn check_artifact(artifact: &Artifact) -> Result<&ArtifactFile, CacheError> {
    let artifact_id = artifact.id;
    if artifact.category != TARBALL_CATEGORY {
        return Err(CacheError::WrongCategory { artifact_id, category: artifact.category.clone() });
    }
    if artifact.state != ArtifactState::Complete {
        return Err(CacheError::Incomplete { artifact_id });
    }
    pick_tarball(&artifact.files).ok_or_else(|| CacheError::NoTarball {
        artifact_id,
        files: artifact.files.iter().map(|f| f.path.clone()).collect(),
    })
}

/// Compare what was downloaded with what the artifact declares.
pub fn verify(artifact_id: i64, file: &ArtifactFile, sha256: &str, size: u64) -> Result<(), CacheError> {
    if file.sha256.eq_ignore_ascii_case(sha256) && file.size == size {
        return Ok(());
    }
    Err(CacheError::ChecksumMismatch {
        artifact_id,
        file: file.path.clone(),
        expected: file.sha256.to_ascii_lowercase(),
        expected_size: file.size,
        actual: sha256.to_owned(),
        actual_size: size,
    })
}

/// Check that `artifact` is a complete system image with its manifest.
pub fn check_image_artifact(artifact: &Artifact) -> Result<(), CacheError> {
    let artifact_id = artifact.id;
    if artifact.category != IMAGE_CATEGORY {
        return Err(CacheError::WrongCategory { artifact_id, category: artifact.category.clone() });
    }
    if artifact.state != ArtifactState::Complete {
        return Err(CacheError::Incomplete { artifact_id });
    }
    let plain = |p: &str| !p.is_empty() && !p.contains('/') && p != "." && p != "..";
    if !artifact.files.iter().any(|f| f.path == "image.json") || !artifact.files.iter().all(|f| plain(&f.path)) {
        return Err(CacheError::NoTarball {
            artifact_id,
            files: artifact.files.iter().map(|f| f.path.clone()).collect(),
        });
    }
    Ok(())
}

/// Look the artifact up and check it is a complete `category` image.
pub async fn lookup(client: &Client, artifact_id: i64, category: &str) -> Result<Artifact, CacheError> {
    let artifact = client.artifact(artifact_id).await.map_err(|source| CacheError::Lookup { artifact_id, source })?;
    if artifact.category != category {
        return Err(CacheError::WrongCategory { artifact_id, category: artifact.category.clone() });
    }
    match category {
        IMAGE_CATEGORY => check_image_artifact(&artifact)?,
        _ => drop(check_artifact(&artifact)?),
    }
    Ok(artifact)
}

/// Removes a temporary file or directory when dropped.
pub struct Temp(PathBuf);

impl Temp {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let result = if self.0.is_dir() { fs::remove_dir_all(&self.0) } else { fs::remove_file(&self.0) };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.0.display(), error = %e, "failed to remove a temporary; swept at the next start")
            }
        }
    }
}

/// Everything from the artifact's id to `<cache-dir>/<id>/rootfs`; returns
/// the tarball's sha256 and what unpacking made. `on_download` is called
/// when the download starts (the cache counts downloads with it).
pub async fn fetch(
    cache_dir: &Path,
    client: &Client,
    artifact_id: i64,
    id_shift: u32,
    on_download: impl FnOnce(),
) -> Result<(String, ExtractStats), CacheError> {
    let artifact = lookup(client, artifact_id, TARBALL_CATEGORY).await?;
    on_download();
    let (tarball, sha256) = download_tarball(cache_dir, client, &artifact).await?;
    let stats = unpack(cache_dir, artifact_id, tarball, id_shift).await?;
    Ok((sha256, stats))
}

/// Download and verify the tarball of a checked `artifact` into a temporary
/// file of the cache; the file (removed when dropped) and its sha256.
pub async fn download_tarball(
    cache_dir: &Path,
    client: &Client,
    artifact: &Artifact,
) -> Result<(Temp, String), CacheError> {
    let file = check_artifact(artifact)?;
    let tarball = Temp(temp_path(cache_dir, DOWNLOAD_PREFIX, artifact.id));
    let (sha256, size) = download(client, artifact.id, file, &tarball.0).await?;
    verify(artifact.id, file, &sha256, size)?;
    Ok((tarball, sha256))
}

/// Download and verify every file of a checked system image into
/// `<cache-dir>/<id>/image/`; the sha256 of its largest file (the disk) and
/// the bytes downloaded.
pub async fn download_image(
    cache_dir: &Path,
    client: &Client,
    artifact: &Artifact,
) -> Result<(String, u64), CacheError> {
    let artifact_id = artifact.id;
    let staging = Temp(temp_path(cache_dir, UNPACK_PREFIX, artifact_id));
    let files = staging.0.join("image");
    fs::create_dir_all(&files).map_err(CacheError::io("create", &files))?;
    let (mut total, mut main) = (0u64, (0u64, String::new()));
    for file in &artifact.files {
        let (sha256, size) = download(client, artifact_id, file, &files.join(&file.path)).await?;
        verify(artifact_id, file, &sha256, size)?;
        total += size;
        if size >= main.0 {
            main = (size, sha256);
        }
    }
    let target = image_dir(cache_dir, artifact_id);
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_dir_all(&target).map_err(CacheError::io("remove", &target))?;
    }
    fs::rename(&staging.0, &target).map_err(CacheError::io("rename", &staging.0))?;
    sync_dir(cache_dir).map_err(CacheError::io("sync", cache_dir))?;
    Ok((main.1, total))
}

/// Stream the file to `to`, hashing on the way; returns (sha256, bytes).
pub async fn download(
    client: &Client,
    artifact_id: i64,
    file: &ArtifactFile,
    to: &Path,
) -> Result<(String, u64), CacheError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| CacheError::Download {
        artifact_id,
        file: file.path.clone(),
        source,
    };
    let started = Instant::now();
    tracing::info!(artifact_id, file = %file.path, size = file.size, "downloading image");
    let mut response = client.download_file(artifact_id, &file.path).await.map_err(|e| failed(Box::new(e)))?;
    let mut out = tokio::fs::File::create_new(to).await.map_err(CacheError::io("create", to))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(Box::new(e)))? {
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(CacheError::io("write", to))?;
        bytes += chunk.len() as u64;
    }
    // tokio finishes a write in the background: wait for it before reading.
    out.flush().await.map_err(CacheError::io("write", to))?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(artifact_id, file = %file.path, bytes, seconds, "downloaded image");
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Keep a downloaded tarball as it is, as `<cache-dir>/<id>/packed/<name>`
/// (for images only Debian tools use: they read the tarball); its size.
pub async fn keep_packed(cache_dir: &Path, artifact_id: i64, tarball: Temp, name: &str) -> Result<u64, CacheError> {
    let cache_dir = cache_dir.to_owned();
    let base = Path::new(name).file_name().map(|n| n.to_owned()).unwrap_or_else(|| "system.tar".into());
    let task = tokio::task::spawn_blocking(move || {
        let staging = Temp(temp_path(&cache_dir, UNPACK_PREFIX, artifact_id));
        let packed = staging.0.join(super::index::PACKED);
        fs::create_dir_all(&packed).map_err(CacheError::io("create", &packed))?;
        let file = packed.join(base);
        fs::rename(&tarball.0, &file).map_err(CacheError::io("rename", &tarball.0))?;
        let size = fs::metadata(&file).map_err(CacheError::io("stat", &file))?.len();
        publish(&cache_dir, artifact_id, &staging)?;
        tracing::info!(artifact_id, bytes = size, "kept the tarball packed: no task needs its tree yet");
        Ok(size)
    });
    task.await.map_err(|e| CacheError::Internal { artifact_id, reason: format!("the keeping thread failed: {e}") })?
}

/// Sync a staged image and rename it to `<cache-dir>/<id>`, replacing what
/// is there (a leftover no index entry owns, or the packed copy it was
/// unpacked from): everything on disk before the index may call it ready.
fn publish(cache_dir: &Path, artifact_id: i64, staging: &Temp) -> Result<(), CacheError> {
    let dir = fs::File::open(&staging.0).map_err(CacheError::io("open", &staging.0))?;
    nix::unistd::syncfs(dir.as_raw_fd()).map_err(|e| CacheError::io("sync", &staging.0)(e.into()))?;
    let target = image_dir(cache_dir, artifact_id);
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_dir_all(&target).map_err(CacheError::io("remove", &target))?;
    }
    fs::rename(&staging.0, &target).map_err(CacheError::io("rename", &staging.0))?;
    sync_dir(cache_dir).map_err(CacheError::io("sync", cache_dir))
}

/// The tarball kept packed for `artifact_id`, moved out to a temporary
/// path (to be unpacked in its place).
pub fn take_packed(cache_dir: &Path, artifact_id: i64) -> Result<Temp, CacheError> {
    let dir = super::index::packed_dir(cache_dir, artifact_id);
    let file = fs::read_dir(&dir)
        .map_err(CacheError::io("read", &dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .ok_or_else(|| CacheError::Internal { artifact_id, reason: format!("{} holds no tarball", dir.display()) })?;
    let temp = Temp(temp_path(cache_dir, DOWNLOAD_PREFIX, artifact_id));
    fs::rename(&file, &temp.0).map_err(CacheError::io("rename", &file))?;
    Ok(temp)
}

/// Unpack the tarball (then delete it) into a staging directory, sync it
/// and rename it to `<cache-dir>/<id>`, on a blocking thread.
pub async fn unpack(
    cache_dir: &Path,
    artifact_id: i64,
    tarball: Temp,
    id_shift: u32,
) -> Result<ExtractStats, CacheError> {
    let cache_dir = cache_dir.to_owned();
    let task = tokio::task::spawn_blocking(move || {
        let staging = Temp(temp_path(&cache_dir, UNPACK_PREFIX, artifact_id));
        fs::create_dir(&staging.0).map_err(CacheError::io("create", &staging.0))?;
        let started = Instant::now();
        tracing::info!(artifact_id, to = %staging.0.display(), "unpacking image");
        let input = fs::File::open(&tarball.0).map_err(CacheError::io("open", &tarball.0))?;
        let stats = extract::unpack(BufReader::with_capacity(1 << 20, input), &staging.0.join("rootfs"), id_shift)
            .map_err(|source| CacheError::Extract { artifact_id, source })?;
        drop(tarball);
        publish(&cache_dir, artifact_id, &staging)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(artifact_id, files = stats.files, bytes = stats.bytes, seconds, "unpacked image");
        Ok(stats)
    });
    task.await.map_err(|e| CacheError::Internal { artifact_id, reason: format!("the unpacking thread failed: {e}") })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn file(path: &str) -> ArtifactFile {
        ArtifactFile { path: path.into(), size: 3, sha256: "AB".repeat(32), complete: true }
    }

    fn artifact(category: &str, state: ArtifactState, files: Vec<ArtifactFile>) -> Artifact {
        Artifact {
            id: 9,
            category: category.into(),
            data: Default::default(),
            files,
            state,
            work_request: None,
            created_by: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_tarball_is_the_single_file_or_the_single_tar() {
        assert_eq!(pick_tarball(&[file("rootfs")]).map(|f| f.path.as_str()), Some("rootfs"));
        let two = [file("SHA256SUMS"), file("bookworm.tar.zst")];
        assert_eq!(pick_tarball(&two).map(|f| f.path.as_str()), Some("bookworm.tar.zst"));
        assert!(pick_tarball(&[file("a.tar"), file("b.tar.xz")]).is_none(), "ambiguous");
        assert!(pick_tarball(&[file("a.txt"), file("b.txt")]).is_none());
        assert!(pick_tarball(&[file("x.tar.d/readme"), file("log")]).is_none(), "only the base name counts");
        assert!(pick_tarball(&[]).is_none());
    }

    #[test]
    fn only_complete_system_tarballs_are_accepted() {
        let ok = artifact(TARBALL_CATEGORY, ArtifactState::Complete, vec![file("r.tar")]);
        assert_eq!(check_artifact(&ok).map(|f| f.path.clone()).ok(), Some("r.tar".to_owned()));
        let wrong = artifact("kiln:system-image", ArtifactState::Complete, vec![file("r.qcow2")]);
        let err = check_artifact(&wrong).expect_err("wrong category");
        assert_eq!(err.code(), "image-wrong-category");
        assert!(err.to_string().contains("kiln:system-image"), "{err}");
        let partial = artifact(TARBALL_CATEGORY, ArtifactState::Incomplete, vec![file("r.tar")]);
        assert_eq!(check_artifact(&partial).expect_err("incomplete").code(), "image-incomplete");
        let none = artifact(TARBALL_CATEGORY, ArtifactState::Complete, vec![]);
        assert_eq!(check_artifact(&none).expect_err("no file").code(), "image-no-tarball");
    }

    #[test]
    fn verification_compares_sha256_and_size() {
        let f = file("r.tar");
        verify(1, &f, &"ab".repeat(32), 3).expect("same digest, any case");
        let err = verify(1, &f, &"cd".repeat(32), 3).expect_err("other digest");
        assert_eq!(err.code(), "image-checksum-mismatch");
        assert!(err.to_string().contains(&"cd".repeat(32)), "{err}");
        assert_eq!(verify(1, &f, &"ab".repeat(32), 4).expect_err("other size").code(), "image-checksum-mismatch");
    }
}
