//! Getting an image as a task wants it, and keeping the backend stores in
//! step with the cache: a flight downloads a new image (unpacking a tarball,
//! keeping a system image's files) and imports it into the store the task's
//! backend needs, or imports an image the cache already has into a store it
//! is not in yet (a tarball is downloaded again for that: the cache keeps
//! only its unpacked tree). Evicted images leave every store that held
//! them; at start-up each store is reconciled with the index.

use super::fetch::{self, IMAGE_CATEGORY};
use super::index::{self, EntryState, IndexEntry};
use super::stores::{ImageStore, StoreImage};
use super::{CacheError, ImageCache, Inner, Want};
use chrono::Utc;
use kiln_shared::artifact::Artifact;
use kiln_shared::client::Client;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

impl ImageCache {
    /// Bring every store in line with the index after a restart: images the
    /// index does not list for a store are removed from it, and the index
    /// forgets store copies that are gone.
    pub async fn reconcile_stores(&self) -> Result<(), CacheError> {
        let inner = &self.inner;
        for store in &inner.stores {
            let keep: BTreeSet<i64> = {
                let state = inner.state();
                state
                    .entries
                    .values()
                    .filter(|e| e.stores.iter().any(|s| s == store.name()))
                    .map(|e| e.artifact_id)
                    .collect()
            };
            let held = match store.reconcile(&keep).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(store = store.name(), error = %e, "failed to reconcile an image store with the cache");
                    continue;
                }
            };
            let mut state = inner.state();
            for entry in state.entries.values_mut() {
                if entry.stores.iter().any(|s| s == store.name()) && !held.contains(&entry.artifact_id) {
                    tracing::warn!(artifact_id = entry.artifact_id, store = store.name(), "the store lost its copy");
                    entry.stores.retain(|s| s != store.name());
                }
            }
        }
        inner.save_index().await
    }

    /// The stores images are kept in.
    pub fn store_names(&self) -> Vec<&'static str> {
        self.inner.stores.iter().map(|s| s.name()).collect()
    }
}

impl Inner {
    fn store(&self, name: &str) -> Result<&Arc<dyn ImageStore>, CacheError> {
        self.stores.iter().find(|s| s.name() == name).ok_or_else(|| CacheError::Internal {
            artifact_id: 0,
            reason: format!("no image store called {name} on this agent"),
        })
    }

    /// Get the image as `want` needs it, then tell every waiter how it went.
    pub(super) async fn fly(
        self: Arc<Self>,
        client: Client,
        artifact_id: i64,
        want: Want,
        done: watch::Sender<Option<Result<(), Arc<CacheError>>>>,
    ) {
        // Make room first when the disk is short.
        if let Err(e) = self.evict().await {
            tracing::warn!(error = %e, "failed to evict images");
        }
        let existing = self.state().entries.get(&artifact_id).cloned();
        let outcome = match existing {
            Some(entry) => match self.unpack_kept(&entry, want).await {
                Ok(()) => self.add_to_store(&client, entry, want).await,
                Err(e) => Err(e),
            },
            None => self.fetch_new(&client, artifact_id, want).await,
        };
        if let Err(e) = &outcome {
            tracing::warn!(artifact_id, code = e.code(), error = %e, "failed to get image");
        }
        self.state().flights.remove(&artifact_id);
        if outcome.is_ok() {
            // Each acquirer saves the index again and reports a failure to do so.
            if let Err(e) = self.save_index().await {
                tracing::warn!(artifact_id, error = %e, "failed to record a new image in the index");
            }
        }
        done.send_replace(Some(outcome.map_err(Arc::new)));
    }

    fn offer(artifact: &Artifact, files: Vec<(String, std::path::PathBuf)>) -> StoreImage {
        StoreImage { artifact_id: artifact.id, category: artifact.category.clone(), data: artifact.data.clone(), files }
    }

    async fn import(&self, store: &str, image: &StoreImage) -> Result<(), CacheError> {
        let artifact_id = image.artifact_id;
        self.store(store)?.import(image).await.map_err(|e| CacheError::Store {
            artifact_id,
            store: store.to_owned(),
            source: e,
        })
    }

    async fn fetch_new(self: &Arc<Self>, client: &Client, artifact_id: i64, want: Want) -> Result<(), CacheError> {
        let artifact = fetch::lookup(client, artifact_id, want.category).await?;
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let (sha256, size) = if want.category == IMAGE_CATEGORY {
            fetch::download_image(&self.dir, client, &artifact).await?
        } else {
            let (tarball, sha256) = fetch::download_tarball(&self.dir, client, &artifact).await?;
            // The tarball's own name (an artifact may carry a package list beside it).
            let name = fetch::pick_tarball(&artifact.files).map(|f| f.path.clone()).unwrap_or_default();
            if let Some(store) = want.store {
                self.import(store, &Self::offer(&artifact, vec![(name.clone(), tarball.path().to_owned())])).await?;
            }
            let kept = if want.unpack {
                fetch::unpack(&self.dir, artifact_id, tarball, self.id_shift).await.map(|stats| stats.bytes)
            } else {
                fetch::keep_packed(&self.dir, artifact_id, tarball, &name).await
            };
            match kept {
                Ok(bytes) => (sha256, bytes),
                Err(e) => {
                    if let Some(store) = want.store {
                        // Keep the store no fuller than the cache.
                        let _ = self.store(store)?.remove(artifact_id).await;
                    }
                    return Err(e);
                }
            }
        };
        let mut stores = Vec::new();
        if let (Some(store), true) = (want.store, want.category == IMAGE_CATEGORY) {
            self.record(artifact_id, sha256.clone(), size, Vec::new());
            let files = image_files(&self.dir, artifact_id)?;
            self.import(store, &Self::offer(&artifact, files)).await?;
            stores.push(store.to_owned());
        } else if let Some(store) = want.store {
            stores.push(store.to_owned());
        }
        self.record(artifact_id, sha256, size, stores);
        Ok(())
    }

    /// A tarball kept packed that a task now wants unpacked: unpack it in
    /// place (no download), keeping its index entry and stores.
    async fn unpack_kept(&self, entry: &IndexEntry, want: Want) -> Result<(), CacheError> {
        let artifact_id = entry.artifact_id;
        let packed = index::packed_dir(&self.dir, artifact_id).is_dir();
        if !(packed && want.unpack && want.category == fetch::TARBALL_CATEGORY) {
            return Ok(());
        }
        let unpacked = match fetch::take_packed(&self.dir, artifact_id) {
            Ok(tarball) => fetch::unpack(&self.dir, artifact_id, tarball, self.id_shift).await,
            Err(e) => Err(e),
        };
        match unpacked {
            Ok(stats) => {
                if let Some(e) = self.state().entries.get_mut(&artifact_id) {
                    e.size = stats.bytes;
                }
                Ok(())
            }
            Err(e) => {
                // The packed copy is gone with it: forget the image, so the
                // next task downloads it again, and keep the stores no fuller.
                let stores = self.state().entries.remove(&artifact_id).map(|e| e.stores).unwrap_or_default();
                let _ = std::fs::remove_dir_all(index::image_dir(&self.dir, artifact_id));
                self.remove_from_stores(vec![(artifact_id, stores)]).await;
                Err(e)
            }
        }
    }

    fn record(&self, artifact_id: i64, sha256: String, size: u64, stores: Vec<String>) {
        let entry = IndexEntry { artifact_id, sha256, size, last_used: Utc::now(), state: EntryState::Ready, stores };
        self.state().entries.insert(artifact_id, entry);
    }

    /// The cache has the image, but not in `want.store` (or not of the
    /// category `want` says): import it there (or refuse it).
    async fn add_to_store(&self, client: &Client, entry: IndexEntry, want: Want) -> Result<(), CacheError> {
        let artifact_id = entry.artifact_id;
        // Refuses an artifact of another category than the task wants.
        let artifact = fetch::lookup(client, artifact_id, want.category).await?;
        let Some(store) = want.store else { return Ok(()) };
        if want.category == IMAGE_CATEGORY {
            let files = image_files(&self.dir, artifact_id)?;
            self.import(store, &Self::offer(&artifact, files)).await?;
        } else {
            self.downloads.fetch_add(1, Ordering::Relaxed);
            let (tarball, _) = fetch::download_tarball(&self.dir, client, &artifact).await?;
            let name = fetch::pick_tarball(&artifact.files).map(|f| f.path.clone()).unwrap_or_default();
            self.import(store, &Self::offer(&artifact, vec![(name, tarball.path().to_owned())])).await?;
        }
        let evicted = {
            let mut state = self.state();
            match state.entries.get_mut(&artifact_id) {
                Some(e) if !e.stores.iter().any(|s| s == store) => {
                    e.stores.push(store.to_owned());
                    false
                }
                Some(_) => false,
                None => true,
            }
        };
        if evicted {
            // Evicted meanwhile: do not leave it in the store.
            let _ = self.store(store)?.remove(artifact_id).await;
        }
        Ok(())
    }

    /// Remove evicted images from the stores that held them; a failure is
    /// logged (the next start reconciles).
    pub(super) async fn remove_from_stores(&self, evicted: Vec<(i64, Vec<String>)>) {
        for (artifact_id, stores) in evicted {
            for name in stores {
                let result = match self.store(&name) {
                    Ok(store) => store.remove(artifact_id).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    tracing::warn!(artifact_id, store = %name, error = %e, "failed to remove an evicted image from a store");
                }
            }
        }
    }
}

/// The files of a cached system image, by name.
fn image_files(cache_dir: &std::path::Path, artifact_id: i64) -> Result<Vec<(String, std::path::PathBuf)>, CacheError> {
    let dir = index::image_files_dir(cache_dir, artifact_id);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(CacheError::io("read", &dir))? {
        let entry = entry.map_err(CacheError::io("read", &dir))?;
        files.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    Ok(files)
}
