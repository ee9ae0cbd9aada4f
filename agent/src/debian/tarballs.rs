//! The environment tarballs Debian tools read (`sbuild --chroot-mode=unshare
//! --chroot=FILE`, `autopkgtest-virt-unshare --tarball FILE`) as one of the
//! image cache's stores: an environment a Debian task uses is linked into
//! `<data-dir>/tarballs/<artifact id>/`, and leaves it when the cache evicts
//! the image, so the LRU limit covers these copies too.

use crate::image_cache::stores::{
    reconcile_image_dirs, remove_image_dir, ImageStore, StoreError, StoreFuture, StoreImage,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const STORE_NAME: &str = "tarball";

pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tarballs")
}

/// The tarball of environment `artifact_id`, if the store holds it.
pub fn tarball_of(store: &Path, artifact_id: i64) -> Option<PathBuf> {
    let dir = store.join(artifact_id.to_string());
    let mut files = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.is_file());
    match (files.next(), files.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

pub struct TarballStore {
    dir: PathBuf,
}

impl TarballStore {
    pub fn new(dir: PathBuf) -> Self {
        TarballStore { dir }
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        let id = image.artifact_id;
        let fail =
            |what: &str, e: &dyn std::fmt::Display| StoreError::new(STORE_NAME, format!("{what} of image {id}"), e);
        let picked = crate::image_cache::fetch::pick_tarball_name(image.files.iter().map(|(n, _)| n.as_str()))
            .ok_or_else(|| fail("find the tarball", &"the artifact has no single tarball"))?;
        let Some((name, path)) = image.files.iter().find(|(n, _)| n == picked) else {
            return Err(fail("find the tarball", &"it was not downloaded"));
        };
        let base = Path::new(name).file_name().ok_or_else(|| fail("name the tarball", &name))?;
        let partial = self.dir.join(format!(".import-{id}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&partial).map_err(|e| fail("create the store directory", &e))?;
        let to = partial.join(base);
        if std::fs::hard_link(path, &to).is_err() {
            std::fs::copy(path, &to).map_err(|e| fail("copy the tarball", &e))?;
        }
        let target = self.dir.join(id.to_string());
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target).map_err(|e| fail("publish", &e))?;
        tracing::info!(artifact_id = id, "environment tarball kept for Debian tools");
        Ok(())
    }
}

impl ImageStore for TarballStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }
    fn category(&self) -> &'static str {
        crate::backends::SYSTEM_TARBALL
    }
    fn import<'a>(&'a self, image: &'a StoreImage) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.import_image(image) })
    }
    fn remove(&self, artifact_id: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move { remove_image_dir(STORE_NAME, &self.dir, artifact_id) })
    }
    fn reconcile<'a>(&'a self, keep: &'a BTreeSet<i64>) -> StoreFuture<'a, BTreeSet<i64>> {
        Box::pin(async move {
            Ok(reconcile_image_dirs(STORE_NAME, &self.dir, keep, |d| {
                d.file_name()
                    .and_then(|n| n.to_str()?.parse().ok())
                    .is_some_and(|id| tarball_of(&self.dir, id).is_some())
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[tokio::test]
    async fn keeps_one_tarball_per_image_and_follows_eviction() {
        let tmp = tempfile::tempdir().expect("tmp");
        let download = tmp.path().join("download");
        std::fs::write(&download, b"tar bytes").expect("write");
        let store = TarballStore::new(tmp.path().join("store"));
        let image = StoreImage {
            artifact_id: 7,
            category: crate::backends::SYSTEM_TARBALL.into(),
            data: Map::new(),
            files: vec![("system.tar.zst".into(), download.clone()), ("packages.txt".into(), download.clone())],
        };
        store.import(&image).await.expect("import");
        let kept = tarball_of(&tmp.path().join("store"), 7).expect("kept");
        assert!(kept.ends_with("7/system.tar.zst"), "{}", kept.display());
        assert_eq!(std::fs::read(&kept).expect("read"), b"tar bytes");
        let held = store.reconcile(&BTreeSet::from([7])).await.expect("reconcile");
        assert_eq!(held, BTreeSet::from([7]));
        let held = store.reconcile(&BTreeSet::new()).await.expect("reconcile");
        assert!(held.is_empty() && tarball_of(&tmp.path().join("store"), 7).is_none(), "an unlisted image goes");
        store.remove(7).await.expect("removing twice is fine");
    }
}
