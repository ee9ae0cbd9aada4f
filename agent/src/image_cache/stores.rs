//! Backend image stores kept in step with the cache (DESIGN §5): an image
//! entering the cache is imported into the stores that need it (Incus's
//! image store for incus-lxc, the QEMU base images for qemu), an evicted one
//! is removed from every store that holds it, the index records which, and
//! start-up reconciles each store with the index after a crash.
//!
//! A store is imported into lazily, the first time a task of its backend
//! uses the image: an image only ever used by unshare never reaches Incus.

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
#[error("image store {store}: failed to {what}: {message}")]
pub struct StoreError {
    pub store: &'static str,
    pub what: String,
    pub message: String,
}

impl StoreError {
    pub fn new(store: &'static str, what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        StoreError { store, what: what.into(), message: message.to_string() }
    }
}

/// An image as downloaded, offered to a store.
#[derive(Debug, Clone)]
pub struct StoreImage {
    pub artifact_id: i64,
    pub category: String,
    /// The artifact's `data` (`architecture`, `codename`, `variant`, …).
    pub data: Map<String, Value>,
    /// The downloaded files, by their path in the artifact.
    pub files: Vec<(String, PathBuf)>,
}

impl StoreImage {
    /// The file called `name`, or the only one.
    pub fn file(&self, name: &str) -> Option<&PathBuf> {
        match self.files.as_slice() {
            [(_, only)] if name.is_empty() => Some(only),
            files => files.iter().find(|(n, _)| n == name).map(|(_, p)| p),
        }
    }

    /// A short human description (`bookworm minbase amd64`).
    pub fn description(&self) -> String {
        let word = |k: &str| self.data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let text = [word("codename"), word("variant"), word("architecture")]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        format!("Kiln environment {} {}", self.artifact_id, text).trim().to_owned()
    }
}

/// One backend's store of images.
pub trait ImageStore: Send + Sync {
    /// As recorded in the index's `stores`.
    fn name(&self) -> &'static str;
    /// The artifact category it holds.
    fn category(&self) -> &'static str;
    fn import<'a>(&'a self, image: &'a StoreImage) -> StoreFuture<'a, ()>;
    /// Remove the image of `artifact_id`; absent already is fine.
    fn remove(&self, artifact_id: i64) -> StoreFuture<'_, ()>;
    /// Remove every image of this agent but those in `keep`; which of
    /// `keep` the store really holds.
    fn reconcile<'a>(&'a self, keep: &'a BTreeSet<i64>) -> StoreFuture<'a, BTreeSet<i64>>;
}

/// For stores that keep each image in `<dir>/<artifact id>/`: remove one
/// (absent already is fine).
pub fn remove_image_dir(store: &'static str, dir: &std::path::Path, artifact_id: i64) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir.join(artifact_id.to_string())) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::new(store, format!("remove image {artifact_id}"), e))
        }
        _ => Ok(()),
    }
}

/// For stores that keep each image in `<dir>/<artifact id>/`: remove every
/// directory but those of `keep` that `intact` accepts; the ids kept.
pub fn reconcile_image_dirs(
    store: &'static str,
    dir: &std::path::Path,
    keep: &BTreeSet<i64>,
    intact: impl Fn(&std::path::Path) -> bool,
) -> BTreeSet<i64> {
    let mut held = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return held };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match name.parse::<i64>() {
            Ok(id) if keep.contains(&id) && intact(&entry.path()) => {
                held.insert(id);
            }
            _ => {
                tracing::warn!(store, path = %entry.path().display(), "removing an image the cache index does not list");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_and_finds_files() {
        let image = StoreImage {
            artifact_id: 7,
            category: "kiln:system-tarball".into(),
            data: json!({"codename": "bookworm", "architecture": "amd64"}).as_object().cloned().unwrap_or_default(),
            files: vec![("rootfs.tar".into(), "/d/rootfs.tar".into())],
        };
        assert_eq!(image.description(), "Kiln environment 7 bookworm amd64");
        assert_eq!(image.file(""), Some(&PathBuf::from("/d/rootfs.tar")));
        assert_eq!(image.file("rootfs.tar"), Some(&PathBuf::from("/d/rootfs.tar")));
        assert_eq!(image.file("disk.qcow2"), None);
    }
}
