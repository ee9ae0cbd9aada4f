//! The cache index, `<cache-dir>/index.json`: which images are unpacked,
//! their sha256, size and last use, so the cache survives restarts.
//!
//! Written atomically (temp file in the same directory, fsync, rename, fsync
//! of the directory) and versioned. An index that cannot be read is moved
//! aside, never trusted and never a reason not to start; entries are checked
//! against the disk on load.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const INDEX_FILE: &str = "index.json";
pub const INDEX_VERSION: u32 = 1;

/// A tarball being downloaded: `.download-<id>-<random>`.
pub const DOWNLOAD_PREFIX: &str = ".download-";
/// An image being unpacked: `.unpack-<id>-<random>/rootfs`.
pub const UNPACK_PREFIX: &str = ".unpack-";
/// An evicted image being deleted: `.evict-<id>-<random>`.
pub const EVICT_PREFIX: &str = ".evict-";
const INDEX_TEMP_PREFIX: &str = ".index.json.tmp-";
/// Prefixes of the cache's own temporary files and directories.
pub const TEMP_PREFIXES: &[&str] = &[DOWNLOAD_PREFIX, UNPACK_PREFIX, EVICT_PREFIX, INDEX_TEMP_PREFIX];

/// A fresh temporary name in `cache_dir` for work on `artifact_id`.
pub fn temp_path(cache_dir: &Path, prefix: &str, artifact_id: i64) -> PathBuf {
    cache_dir.join(format!("{prefix}{artifact_id}-{:016x}", rand::random::<u64>()))
}

/// The state of a cached image: only complete, unpacked images are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    Ready,
}

/// One cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub artifact_id: i64,
    /// sha256 of the tarball it was unpacked from.
    pub sha256: String,
    /// Bytes of file content in the unpacked tree (what evicting it frees).
    pub size: u64,
    pub last_used: DateTime<Utc>,
    pub state: EntryState,
    /// Backend image stores that hold a copy (Incus, QEMU base images).
    #[serde(default)]
    pub stores: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    entries: Vec<IndexEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("failed to write the image cache index {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("failed to move the unreadable image cache index {path} aside: {source}")]
    MoveAside { path: PathBuf, source: io::Error },
}

/// Where image `artifact_id` lives.
pub fn image_dir(cache_dir: &Path, artifact_id: i64) -> PathBuf {
    cache_dir.join(artifact_id.to_string())
}

/// The unpacked root filesystem of image `artifact_id`.
pub fn rootfs_dir(cache_dir: &Path, artifact_id: i64) -> PathBuf {
    image_dir(cache_dir, artifact_id).join("rootfs")
}

/// A system tarball kept as downloaded (`<id>/packed/<file>`): no task has
/// needed its tree yet.
pub const PACKED: &str = "packed";

pub fn packed_dir(cache_dir: &Path, artifact_id: i64) -> PathBuf {
    image_dir(cache_dir, artifact_id).join(PACKED)
}

/// The files of system image `artifact_id` (kept as downloaded).
pub fn image_files_dir(cache_dir: &Path, artifact_id: i64) -> PathBuf {
    image_dir(cache_dir, artifact_id).join("image")
}

/// What a cached image consists of: its unpacked root filesystem (system
/// tarballs) or its files (system images), if present.
pub fn content_dir(cache_dir: &Path, artifact_id: i64) -> Option<PathBuf> {
    [rootfs_dir(cache_dir, artifact_id), image_files_dir(cache_dir, artifact_id), packed_dir(cache_dir, artifact_id)]
        .into_iter()
        .find(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
}

/// Parse the index text, by id; an error says why it cannot be trusted.
pub fn parse(text: &str) -> Result<BTreeMap<i64, IndexEntry>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(INDEX_VERSION) => {}
        Some(v) => return Err(format!("unknown version {v}")),
        None => return Err("no version".to_owned()),
    }
    let file: IndexFile = serde_json::from_value(value).map_err(|e| format!("invalid index: {e}"))?;
    Ok(file.entries.into_iter().map(|e| (e.artifact_id, e)).collect())
}

/// Read the index of `cache_dir`, moving an unreadable one aside and
/// dropping entries whose root filesystem is missing.
pub fn load(cache_dir: &Path) -> Result<BTreeMap<i64, IndexEntry>, IndexError> {
    let path = cache_dir.join(INDEX_FILE);
    let parsed = match fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => Err(format!("unreadable: {e}")),
    };
    let mut entries = match parsed {
        Ok(entries) => entries,
        Err(why) => {
            let aside = cache_dir.join(format!("{INDEX_FILE}.corrupt-{}", Utc::now().format("%Y%m%dT%H%M%S%.6fZ")));
            fs::rename(&path, &aside).map_err(|source| IndexError::MoveAside { path: path.clone(), source })?;
            tracing::warn!(index = %path.display(), moved_to = %aside.display(), reason = %why,
                "image cache index cannot be trusted; moved it aside and starting with an empty cache");
            return Ok(BTreeMap::new());
        }
    };
    entries.retain(|id, _| {
        let rootfs = rootfs_dir(cache_dir, *id);
        let present = content_dir(cache_dir, *id).is_some();
        if !present {
            tracing::warn!(artifact_id = id, rootfs = %rootfs.display(), "cached image is missing; forgetting it");
        }
        present
    });
    Ok(entries)
}

/// Write the index atomically (temp file, rename); `durable` adds the
/// fsyncs that make it survive power loss, not only a crash.
pub fn save<'a>(
    cache_dir: &Path,
    entries: impl IntoIterator<Item = &'a IndexEntry>,
    durable: bool,
) -> Result<(), IndexError> {
    let path = cache_dir.join(INDEX_FILE);
    let file = IndexFile { version: INDEX_VERSION, entries: entries.into_iter().cloned().collect() };
    let temp = cache_dir.join(format!("{INDEX_TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let result = write_file(&temp, &file, durable).and_then(|()| fs::rename(&temp, &path)).and_then(|()| {
        if durable {
            sync_dir(cache_dir)
        } else {
            Ok(())
        }
    });
    if result.is_err() {
        // The write already failed; a temp file left over is swept at the next start.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|source| IndexError::Write { path, source })
}

fn write_file(path: &Path, file: &IndexFile, durable: bool) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut out = File::options().write(true).create_new(true).open(path)?;
    out.write_all(&text)?;
    if durable {
        out.sync_all()?;
    }
    Ok(())
}

/// fsync a directory so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove from `cache_dir` every image directory not in `known` and every
/// temporary left by an interrupted download, unpack or eviction. Anything
/// else (the index, corrupt indexes kept for inspection, foreign files) is
/// left alone. Returns what was removed.
pub fn sweep(cache_dir: &Path, known: &HashSet<i64>) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for item in fs::read_dir(cache_dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let stale_image = name.parse::<i64>().is_ok_and(|id| !known.contains(&id) && id.to_string() == name);
        if !stale_image && !TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = item.path();
        if item.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        tracing::info!(path = %path.display(), "removed a leftover from the image cache");
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(artifact_id: i64) -> IndexEntry {
        IndexEntry {
            artifact_id,
            sha256: "ab".repeat(32),
            size: 1234,
            last_used: Utc::now(),
            state: EntryState::Ready,
            stores: vec![],
        }
    }

    #[test]
    fn round_trip_and_documented_shape() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(rootfs_dir(dir.path(), 7)).expect("rootfs");
        let saved = entry(7);
        save(dir.path(), [&saved], true).expect("save");
        let text = fs::read_to_string(dir.path().join(INDEX_FILE)).expect("read");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(json["version"], 1);
        assert_eq!(json["entries"][0]["state"], "ready");
        assert_eq!(json["entries"][0]["stores"], serde_json::json!([]));
        assert!(json["entries"][0]["last_used"].as_str().is_some_and(|t| DateTime::parse_from_rfc3339(t).is_ok()));
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded.into_values().collect::<Vec<_>>(), vec![saved]);
        let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn parse_refuses_unknown_versions_and_garbage() {
        assert!(parse(r#"{"version": 1, "entries": []}"#).expect("v1").is_empty());
        assert!(parse(r#"{"version": 2, "entries": []}"#).expect_err("v2").contains("unknown version 2"));
        assert!(parse(r#"{"entries": []}"#).is_err());
        assert!(parse("{not json").is_err());
        assert!(parse(r#"{"version": 1, "entries": [{"artifact_id": 1}]}"#).is_err());
    }

    #[test]
    fn a_corrupt_index_is_moved_aside_and_missing_images_are_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(INDEX_FILE), b"{\"version\": 1, \"entr").expect("write");
        assert!(load(dir.path()).expect("load").is_empty());
        let names: Vec<String> =
            fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("index.json.corrupt-"), "{names:?}");

        fs::create_dir_all(rootfs_dir(dir.path(), 1)).expect("rootfs 1");
        save(dir.path(), [&entry(1), &entry(2)], true).expect("save");
        assert_eq!(load(dir.path()).expect("load").keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn sweep_removes_only_stale_images_and_temporaries() {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["1/rootfs", "2/rootfs", ".unpack-3-ab/rootfs", ".evict-4-cd", "keep", "007"] {
            fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        for f in [".download-5-ef", "index.json", "index.json.corrupt-x", ".index.json.tmp-1-2"] {
            fs::write(dir.path().join(f), b"x").expect("write");
        }
        let removed = sweep(dir.path(), &HashSet::from([1])).expect("sweep");
        assert_eq!(removed.len(), 5, "{removed:?}");
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, ["007", "1", "index.json", "index.json.corrupt-x", "keep"]);
    }
}
