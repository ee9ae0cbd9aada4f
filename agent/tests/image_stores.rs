//! The image cache keeps backend stores in step (DESIGN §5), against a real
//! coordinator and a recording fake store: an image is imported into a store
//! the first time a task needs it there (once), an evicted image leaves the
//! stores that held it, the index records which, and start-up reconciles a
//! store that drifted (a stray image, a lost copy). System images are cached
//! as downloaded and offered to their store with all their files.

use kiln_agent::config::ImageCacheConfig;
use kiln_agent::image_cache::stores::{ImageStore, StoreError, StoreFuture, StoreImage};
use kiln_agent::image_cache::{ImageCache, Want};
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::Client;
use kiln_tests::{obj, sha256_hex, Coordinator};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Fake {
    held: Mutex<BTreeSet<i64>>,
    imports: Mutex<Vec<(i64, Vec<String>)>>,
    removals: Mutex<Vec<i64>>,
}

struct FakeStore {
    category: &'static str,
    state: Arc<Fake>,
}

impl ImageStore for FakeStore {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn category(&self) -> &'static str {
        self.category
    }
    fn import<'a>(&'a self, image: &'a StoreImage) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut names: Vec<String> = image.files.iter().map(|(n, _)| n.clone()).collect();
            names.sort();
            for (name, path) in &image.files {
                if !path.is_file() {
                    return Err(StoreError::new("fake", "import", format!("{name} is not at {}", path.display())));
                }
            }
            self.state.imports.lock().expect("lock").push((image.artifact_id, names));
            self.state.held.lock().expect("lock").insert(image.artifact_id);
            Ok(())
        })
    }
    fn remove(&self, artifact_id: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.state.removals.lock().expect("lock").push(artifact_id);
            self.state.held.lock().expect("lock").remove(&artifact_id);
            Ok(())
        })
    }
    fn reconcile<'a>(&'a self, keep: &'a BTreeSet<i64>) -> StoreFuture<'a, BTreeSet<i64>> {
        Box::pin(async move {
            let mut held = self.state.held.lock().expect("lock");
            held.retain(|id| keep.contains(id));
            Ok(held.clone())
        })
    }
}

fn tarball(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(marker.len() as u64);
    h.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
    h.set_gid(u64::from(nix::unistd::getegid().as_raw()));
    b.append_data(&mut h, "etc/marker", marker.as_bytes()).expect("append");
    b.into_inner().expect("tar")
}

async fn upload(client: &Client, category: &str, files: &[(&str, Vec<u8>)]) -> i64 {
    let new = NewArtifact {
        category: category.into(),
        data: obj(json!({"codename": "test", "architecture": "amd64"})),
        files: files
            .iter()
            .map(|(n, b)| FileSpec { path: (*n).into(), size: b.len() as u64, sha256: sha256_hex(b) })
            .collect(),
        work_request: None,
    };
    let artifact = client.create_artifact(&new).await.expect("create");
    for (name, bytes) in files {
        client.upload_file(artifact.id, name, bytes.clone()).await.expect("upload");
    }
    artifact.id
}

const WANT: Want = Want::new("kiln:system-tarball", Some("fake"));

fn open(dir: &std::path::Path, max_images: usize, state: &Arc<Fake>) -> ImageCache {
    let store: Arc<dyn ImageStore> = Arc::new(FakeStore { category: "kiln:system-tarball", state: state.clone() });
    let config = ImageCacheConfig { max_images, min_free_disk: 0 };
    ImageCache::open_with_stores(dir, &config, 0, vec![store]).expect("open")
}

fn stores_of(cache: &ImageCache) -> Vec<(i64, Vec<String>)> {
    cache.entries().into_iter().map(|e| (e.artifact_id, e.stores)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_follow_the_cache_through_use_eviction_and_restart() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let dir = tempfile::tempdir().expect("tmp");
    let state = Arc::new(Fake::default());
    let cache = open(dir.path(), 2, &state);
    let a = upload(&user, "kiln:system-tarball", &[("a.tar", tarball("a"))]).await;
    let b = upload(&user, "kiln:system-tarball", &[("b.tar", tarball("b"))]).await;
    let d = upload(&user, "kiln:system-tarball", &[("d.tar", tarball("d"))]).await;

    // Used without a store first: not imported; then with it: imported once,
    // from a fresh download of the tarball (the cache keeps only the tree).
    drop(cache.acquire(&user, a).await.expect("a"));
    assert!(state.imports.lock().expect("lock").is_empty());
    drop(cache.acquire_for(&user, a, WANT).await.expect("a in the store"));
    drop(cache.acquire_for(&user, a, WANT).await.expect("a again"));
    assert_eq!(*state.imports.lock().expect("lock"), [(a, vec!["a.tar".to_owned()])]);
    assert_eq!(cache.downloads(), 2);
    assert_eq!(stores_of(&cache), [(a, vec!["fake".to_owned()])]);

    // A new image goes straight into the store with its first download.
    drop(cache.acquire_for(&user, b, WANT).await.expect("b"));
    assert_eq!(cache.downloads(), 3);
    // A third evicts the least recently used (a) from the cache and the store.
    drop(cache.acquire_for(&user, d, WANT).await.expect("d"));
    assert_eq!(*state.removals.lock().expect("lock"), [a]);
    assert_eq!(*state.held.lock().expect("lock"), BTreeSet::from([b, d]));
    assert_eq!(stores_of(&cache).len(), 2);

    // A crash leaves the store out of step: a stray image, a lost copy.
    drop(cache);
    state.held.lock().expect("lock").insert(99);
    state.held.lock().expect("lock").remove(&b);
    let cache = open(dir.path(), 2, &state);
    cache.reconcile_stores().await.expect("reconcile");
    assert_eq!(*state.held.lock().expect("lock"), BTreeSet::from([d]), "the stray is gone");
    assert_eq!(stores_of(&cache), [(b, vec![]), (d, vec!["fake".to_owned()])], "the lost copy is forgotten");
    drop(cache);
    let cache = open(dir.path(), 2, &state);
    assert_eq!(stores_of(&cache), [(b, vec![]), (d, vec!["fake".to_owned()])], "the index recorded it");
    drop(cache.acquire_for(&user, b, WANT).await.expect("b back in the store"));
    assert!(state.held.lock().expect("lock").contains(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_images_are_kept_as_downloaded_and_offered_whole() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let dir = tempfile::tempdir().expect("tmp");
    let state = Arc::new(Fake::default());
    let store: Arc<dyn ImageStore> = Arc::new(FakeStore { category: "kiln:system-image", state: state.clone() });
    let config = ImageCacheConfig { max_images: 3, min_free_disk: 0 };
    let cache = ImageCache::open_with_stores(dir.path(), &config, 0, vec![store]).expect("open");
    let files = [("image.json", b"{}".to_vec()), ("disk.qcow2", vec![7u8; 4096]), ("vmlinuz", b"k".to_vec())];
    let id = upload(&user, "kiln:system-image", &files).await;
    let want = Want::new("kiln:system-image", Some("fake"));
    let lease = cache.acquire_for(&user, id, want).await.expect("acquire");
    assert_eq!(std::fs::read(lease.rootfs.join("disk.qcow2")).expect("disk"), vec![7u8; 4096]);
    assert_eq!(lease.sha256, sha256_hex(&[7u8; 4096]), "the disk's digest stands for the image");
    let imported = state.imports.lock().expect("lock").clone();
    assert_eq!(imported, [(id, vec!["disk.qcow2".to_owned(), "image.json".to_owned(), "vmlinuz".to_owned()])]);
    // Wrong kind for the backend: refused with the category in the message.
    let err = cache.acquire(&user, id).await.expect_err("not a tarball");
    assert_eq!(err.code(), "image-wrong-category", "{err}");
    let tarball_id = upload(&user, "kiln:system-tarball", &[("r.tar", tarball("r"))]).await;
    let err = cache.acquire_for(&user, tarball_id, want).await.expect_err("not a system image");
    assert_eq!(err.code(), "image-wrong-category", "{err}");
}

/// Debian tools read an environment's tarball (through the real tarball
/// store), so the cache keeps it packed, and unpacks it from that copy,
/// without a second download, only when a task needs its tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarball_only_debian_tools_use_is_kept_packed_until_a_task_needs_its_tree() {
    use kiln_agent::debian::tarballs::{tarball_of, TarballStore};
    use kiln_agent::image_cache::index::{packed_dir, rootfs_dir};
    let c = Coordinator::start();
    let user = c.user("alice");
    let dir = tempfile::tempdir().expect("tmp");
    let (cache_dir, store_dir) = (dir.path().join("cache"), dir.path().join("tarballs"));
    let open = || {
        let store: Arc<dyn ImageStore> = Arc::new(TarballStore::new(store_dir.clone()));
        let config = ImageCacheConfig { max_images: 3, min_free_disk: 0 };
        ImageCache::open_with_stores(&cache_dir, &config, 0, vec![store]).expect("open")
    };
    let bytes = tarball("packed");
    let id =
        upload(&user, "kiln:system-tarball", &[("system.tar", bytes.clone()), ("packages.txt", b"a 1\n".to_vec())])
            .await;
    let cache = open();
    let lease = cache.acquire_for(&user, id, kiln_agent::debian::ENVIRONMENT).await.expect("for sbuild");
    assert!(!rootfs_dir(&cache_dir, id).exists(), "not unpacked for a Debian tool");
    assert_eq!(std::fs::read(packed_dir(&cache_dir, id).join("system.tar")).expect("kept"), bytes);
    assert_eq!(std::fs::read(tarball_of(&store_dir, id).expect("in the store")).expect("read"), bytes);
    assert_eq!(cache.entries()[0].size, bytes.len() as u64, "its size is the tarball's");
    drop(lease);
    drop(cache);

    // After a restart the packed image is still cached; a command task's
    // unshare backend wants the tree: unpacked from the kept copy.
    let cache = open();
    assert_eq!(cache.entries().len(), 1, "the index kept the packed image");
    let lease = cache.acquire(&user, id).await.expect("for a command task");
    assert_eq!(std::fs::read_to_string(lease.rootfs.join("etc/marker")).expect("marker"), "packed");
    assert_eq!(cache.downloads(), 0, "unpacked from the kept tarball, not downloaded again");
    assert!(!packed_dir(&cache_dir, id).exists(), "the packed copy is gone once unpacked");
    assert!(tarball_of(&store_dir, id).is_some(), "the store's copy stays");
    assert_eq!(cache.entries()[0].stores, ["tarball"]);
    drop(lease);
    drop(cache.acquire_for(&user, id, kiln_agent::debian::ENVIRONMENT).await.expect("sbuild again"));
    assert_eq!(cache.downloads(), 0, "an unpacked image serves Debian tools too");
}
