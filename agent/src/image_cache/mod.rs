//! The agent's LRU cache of environment images (DESIGN §5, §6a).
//!
//! Each `kiln:system-tarball` is downloaded once (even when several tasks
//! ask for it at the same moment), verified by sha256, unpacked safely into
//! `<cache-dir>/<artifact-id>/rootfs`, recorded in an index that survives
//! restarts, pinned while a task uses it, and evicted least recently used
//! first when the cache holds more than `max_images` images or the disk has
//! less than `min_free_disk` free.
//!
//! - [`extract`]: safe tarball extraction;
//! - [`policy`]: the pure eviction decision;
//! - [`index`]: the on-disk index, written atomically;
//! - [`fetch`]: download, verification and unpacking of one image;
//! - [`stores`]: the backend image stores kept in step with the cache;
//! - `sync`: getting an image (into a store), eviction from the stores,
//!   reconciling them at start-up;
//! - this module: the cache itself, its single flight and its pins.
//!
//! `kiln:system-image` artifacts (bootable disks for qemu) are cached too,
//! as downloaded, in `<cache-dir>/<artifact-id>/image/`; a tarball that only
//! Debian tools have used (they read the tarball) stays packed in
//! `<cache-dir>/<artifact-id>/packed/` until a task needs its tree.

pub mod error;
pub mod extract;
pub mod fetch;
pub mod index;
pub mod policy;
pub mod stores;
mod sync;

pub use error::CacheError;
pub use index::IndexEntry;

use crate::config::ImageCacheConfig;
use chrono::Utc;
use index::EVICT_PREFIX;
use kiln_shared::client::Client;
use nix::fcntl::{Flock, FlockArg};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// How a download ended, as seen by everyone who waited for it.
type Flight = watch::Receiver<Option<Result<(), Arc<CacheError>>>>;

/// The cache of one agent; cheap to share behind an `Arc`.
pub struct ImageCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_images: usize,
    min_free_disk: u64,
    id_shift: u32,
    state: Mutex<State>,
    /// Serialises index writes so that a newer snapshot is never overwritten by an older one.
    save_lock: tokio::sync::Mutex<()>,
    downloads: AtomicU64,
    /// Backend stores that images are imported into.
    stores: Vec<Arc<dyn stores::ImageStore>>,
    /// Held for the cache's lifetime: one process per cache directory.
    _lock: Flock<File>,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<i64, IndexEntry>,
    /// Leases (and waiting acquirers) per artifact id: never evicted while > 0.
    pins: HashMap<i64, usize>,
    /// Downloads under way, by artifact id.
    flights: HashMap<i64, Flight>,
}

/// What a task wants of an image: its category, the store it must be in if
/// its backend has one, and whether a system tarball must be unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub category: &'static str,
    pub store: Option<&'static str>,
    /// `false`: only the store's copy is used (Debian tools read the
    /// tarball itself), so the cache keeps the tarball as downloaded
    /// (`<id>/packed/`) and unpacks it only if a task needs the tree later.
    pub unpack: bool,
}

impl Want {
    /// An unpacked system tarball, no store (the unshare backend).
    pub const TARBALL: Want = Want { category: fetch::TARBALL_CATEGORY, store: None, unpack: true };

    /// An image of `category` in `store`, unpacked if it is a tarball.
    pub const fn new(category: &'static str, store: Option<&'static str>) -> Want {
        Want { category, store, unpack: true }
    }
}

/// A cached image in use: unpinned when dropped.
pub struct ImageLease {
    pub artifact_id: i64,
    /// sha256 of the tarball the image was unpacked from (of a system
    /// image: of its disk).
    pub sha256: String,
    /// The unpacked root filesystem (of a system image: its files).
    pub rootfs: PathBuf,
    _pin: Pin,
}

impl std::fmt::Debug for ImageLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageLease").field("artifact_id", &self.artifact_id).field("rootfs", &self.rootfs).finish()
    }
}

/// One pin on an artifact id, taken before the image even exists so that a
/// freshly downloaded image cannot be evicted before its waiters get it.
struct Pin {
    inner: Arc<Inner>,
    artifact_id: i64,
}

impl Pin {
    fn new(inner: &Arc<Inner>, artifact_id: i64) -> Self {
        *inner.state().pins.entry(artifact_id).or_default() += 1;
        Pin { inner: Arc::clone(inner), artifact_id }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        if let Some(count) = state.pins.get_mut(&self.artifact_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.pins.remove(&self.artifact_id);
            }
        }
    }
}

impl ImageCache {
    /// Open (creating it if needed) the cache in `cache_dir`: load the
    /// index, forget images whose directory is gone, remove directories the
    /// index does not know and leftovers of interrupted work, and apply the
    /// limits of `config`.
    pub fn open(cache_dir: &Path, config: &ImageCacheConfig, id_shift: u32) -> Result<Self, CacheError> {
        Self::open_with_stores(cache_dir, config, id_shift, Vec::new())
    }

    /// [`ImageCache::open`], keeping `stores` in step with the cache (call
    /// [`ImageCache::reconcile_stores`] once the async runtime runs).
    pub fn open_with_stores(
        cache_dir: &Path,
        config: &ImageCacheConfig,
        id_shift: u32,
        stores: Vec<Arc<dyn stores::ImageStore>>,
    ) -> Result<Self, CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(cache_dir)
            .map_err(CacheError::io("create", cache_dir))?;
        let lock_path = cache_dir.join(".lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(CacheError::io("open", &lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => CacheError::Locked { path: cache_dir.to_owned() },
            other => CacheError::io("lock", &lock_path)(other.into()),
        })?;
        let entries = index::load(cache_dir)?;
        let known: HashSet<i64> = entries.keys().copied().collect();
        index::sweep(cache_dir, &known).map_err(CacheError::io("clean up", cache_dir))?;
        index::save(cache_dir, entries.values(), true)?;
        let inner = Inner {
            dir: cache_dir.to_owned(),
            max_images: config.max_images,
            min_free_disk: config.min_free_disk,
            id_shift,
            state: Mutex::new(State { entries, ..State::default() }),
            save_lock: tokio::sync::Mutex::new(()),
            downloads: AtomicU64::new(0),
            stores,
            _lock: lock,
        };
        let trash = inner.plan_evictions()?;
        if !trash.is_empty() {
            inner.write_index(true)?;
            remove_trash(trash);
        }
        Ok(ImageCache { inner: Arc::new(inner) })
    }

    /// The image of `artifact_id`, downloaded and unpacked if it is not
    /// cached yet, pinned until the lease is dropped.
    pub async fn acquire(&self, client: &Client, artifact_id: i64) -> Result<ImageLease, CacheError> {
        self.acquire_for(client, artifact_id, Want::TARBALL).await
    }

    /// The image of `artifact_id` as `want` needs it: of its category, and
    /// imported into its store (if not there yet), pinned until the lease
    /// is dropped.
    pub async fn acquire_for(&self, client: &Client, artifact_id: i64, want: Want) -> Result<ImageLease, CacheError> {
        let pin = Pin::new(&self.inner, artifact_id);
        let (sha256, rootfs) = loop {
            let mut flight = match self.inner.ready_or_flight(client, artifact_id, want) {
                Ok(ready) => break ready,
                Err(flight) => flight,
            };
            let outcome = match flight.wait_for(Option::is_some).await {
                Ok(done) => done.clone(),
                Err(_) => None,
            };
            match outcome {
                Some(Ok(())) => continue,
                Some(Err(e)) => return Err(CacheError::Shared(e)),
                None => {
                    let reason = "the download task stopped before it finished".to_owned();
                    return Err(CacheError::Internal { artifact_id, reason });
                }
            }
        };
        // The image is ready and pinned. Recording its last use is
        // bookkeeping: written without fsync (a crash keeps the old or the
        // new index; only recency could be lost), so it costs the task's
        // start no disk flush. Failures are logged, not the task's problem.
        if let Err(e) = self.inner.save_index_relaxed().await {
            tracing::warn!(artifact_id, error = %e, "failed to record the image's last use");
        }
        if let Err(e) = self.inner.evict().await {
            tracing::warn!(error = %e, "failed to evict images");
        }
        Ok(ImageLease { artifact_id, sha256, rootfs, _pin: pin })
    }

    /// Evict what the limits call for (never a pinned image); returns the
    /// evicted artifact ids.
    pub async fn evict(&self) -> Result<Vec<i64>, CacheError> {
        self.inner.evict().await
    }

    /// The cached images, by artifact id.
    pub fn entries(&self) -> Vec<IndexEntry> {
        self.inner.state().entries.values().cloned().collect()
    }

    /// How many leases (and waiting acquirers) pin `artifact_id`.
    pub fn pin_count(&self, artifact_id: i64) -> usize {
        self.inner.state().pins.get(&artifact_id).copied().unwrap_or(0)
    }

    /// How many downloads this cache has started since it was opened.
    pub fn downloads(&self) -> u64 {
        self.inner.downloads.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the maps are still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The image if it is ready (marking it used), else the download to wait
    /// for, started here if nobody has started it.
    fn ready_or_flight(
        self: &Arc<Self>,
        client: &Client,
        artifact_id: i64,
        want: Want,
    ) -> Result<(String, PathBuf), Flight> {
        let mut state = self.state();
        if let Some(entry) = state.entries.get_mut(&artifact_id) {
            match index::content_dir(&self.dir, artifact_id) {
                Some(content) => {
                    // Not in the store it needs yet: a flight imports it; of
                    // another kind: a flight finds out the artifact's category;
                    // kept packed but wanted unpacked: a flight unpacks it.
                    let tarball = want.category == fetch::TARBALL_CATEGORY;
                    let kind_ok = if content.ends_with(index::PACKED) {
                        tarball && !want.unpack
                    } else {
                        content.ends_with("rootfs") == tarball
                    };
                    if kind_ok && want.store.is_none_or(|s| entry.stores.iter().any(|e| e == s)) {
                        entry.last_used = Utc::now();
                        return Ok((entry.sha256.clone(), content));
                    }
                }
                None => {
                    let dir = index::image_dir(&self.dir, artifact_id);
                    tracing::warn!(artifact_id, dir = %dir.display(), "cached image vanished; fetching it again");
                    state.entries.remove(&artifact_id);
                }
            }
        }
        if let Some(flight) = state.flights.get(&artifact_id) {
            // A closed flight is one whose task died without reporting: start over.
            if flight.has_changed().is_ok() {
                return Err(flight.clone());
            }
        }
        let (done, flight) = watch::channel(None);
        state.flights.insert(artifact_id, flight.clone());
        tokio::spawn(Inner::fly(Arc::clone(self), client.clone(), artifact_id, want, done));
        Err(flight)
    }

    async fn evict(self: &Arc<Self>) -> Result<Vec<i64>, CacheError> {
        let trash = self.plan_evictions()?;
        if trash.is_empty() {
            return Ok(Vec::new());
        }
        let ids = trash.iter().map(|(id, _, _)| *id).collect();
        let from_stores: Vec<(i64, Vec<String>)> = trash.iter().map(|(id, _, s)| (*id, s.clone())).collect();
        self.save_index().await?;
        let removal = tokio::task::spawn_blocking(move || remove_trash(trash));
        if let Err(e) = removal.await {
            tracing::warn!(error = %e, "removing evicted images failed; they are swept at the next start");
        }
        self.remove_from_stores(from_stores).await;
        Ok(ids)
    }

    /// Write the index as it is now, off the async threads, durably.
    async fn save_index(self: &Arc<Self>) -> Result<(), CacheError> {
        self.save_index_with(true).await
    }

    /// The same without fsync, for recency updates.
    async fn save_index_relaxed(self: &Arc<Self>) -> Result<(), CacheError> {
        self.save_index_with(false).await
    }

    async fn save_index_with(self: &Arc<Self>, durable: bool) -> Result<(), CacheError> {
        let _order = self.save_lock.lock().await;
        let this = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || this.write_index(durable));
        task.await.map_err(|e| CacheError::Internal { artifact_id: 0, reason: format!("index writer failed: {e}") })?
    }

    fn write_index(&self, durable: bool) -> Result<(), CacheError> {
        let entries: Vec<IndexEntry> = self.state().entries.values().cloned().collect();
        index::save(&self.dir, &entries, durable).map_err(CacheError::from)
    }

    /// Decide evictions, drop them from the index in memory and move their
    /// directories aside (a rename, so a new download of the same id never
    /// meets a half-deleted tree). The caller saves the index, then removes
    /// the returned directories.
    fn plan_evictions(&self) -> Result<Vec<Trash>, CacheError> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| CacheError::io("statvfs", &self.dir)(e.into()))?;
        // Both are u64 on the 64-bit Linux targets the agent supports.
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        let mut state = self.state();
        let views: Vec<policy::EntryView> = state
            .entries
            .values()
            .map(|e| policy::EntryView { artifact_id: e.artifact_id, size: e.size, last_used: e.last_used })
            .collect();
        let pinned: HashSet<i64> = state.pins.keys().copied().collect();
        let chosen = policy::choose_evictions(&views, &pinned, self.max_images, free, self.min_free_disk);
        let mut trash = Vec::new();
        for artifact_id in chosen {
            let from = index::image_dir(&self.dir, artifact_id);
            let to = index::temp_path(&self.dir, EVICT_PREFIX, artifact_id);
            match fs::rename(&from, &to) {
                Ok(()) => trash.push((artifact_id, Some(to), stores_of(&state, artifact_id))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    trash.push((artifact_id, None, stores_of(&state, artifact_id)))
                }
                Err(e) => {
                    // Keep it in the index: a later eviction tries again.
                    tracing::warn!(artifact_id, path = %from.display(), error = %e, "failed to evict image");
                    continue;
                }
            }
            state.entries.remove(&artifact_id);
            tracing::info!(artifact_id, free_disk = free, "evicted image");
        }
        Ok(trash)
    }
}

/// An evicted image: its id, its directory moved aside, the stores it was in.
type Trash = (i64, Option<PathBuf>, Vec<String>);

fn stores_of(state: &State, artifact_id: i64) -> Vec<String> {
    state.entries.get(&artifact_id).map(|e| e.stores.clone()).unwrap_or_default()
}

/// Delete evicted images' directories (already out of the index).
fn remove_trash(trash: Vec<Trash>) {
    for (artifact_id, path, _) in trash {
        let Some(path) = path else { continue };
        if let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(artifact_id, path = %path.display(), error = %e, "failed to remove an evicted image");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<ImageCache>();
        shared::<ImageLease>();
        shared::<CacheError>();
    }
}
