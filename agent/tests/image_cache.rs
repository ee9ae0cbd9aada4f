//! The image cache against a real coordinator over HTTP: tarball artifacts
//! built here are uploaded, then acquired concurrently (one download),
//! evicted least recently used first (never a pinned one), kept across a
//! restart, and a corrupt index never stops the cache from opening.
//!
//! Needs `cargo build --workspace --bins` first (the coordinator binary).
//! Entries belong to the test's own user so that most of this runs without
//! root; shifting ownership (uid + 100000) is checked only when privileged.

use kiln_agent::config::ImageCacheConfig;
use kiln_agent::image_cache::index::{rootfs_dir, INDEX_FILE};
use kiln_agent::image_cache::{ImageCache, ImageLease};
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::Client;
use kiln_tests::{obj, privileged_skip_reason, sha256_hex, Coordinator};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use tar::{EntryType, Header};

const SHIFT: u32 = 100_000;

fn me() -> u64 {
    u64::from(nix::unistd::geteuid().as_raw())
}

/// A gzipped root filesystem: a few directories, files and a symlink,
/// owned by `owner` except /home/user (`user`). `marker` makes it unique.
fn rootfs_tarball(marker: &str, owner: u64, user: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind: EntryType, path: &str, mode: u32, ids: u64, data: &[u8], link: Option<&str>| {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(ids);
        h.set_gid(ids);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name(link).expect("link name");
        }
        b.append_data(&mut h, path, data).expect("append");
    };
    add(EntryType::Directory, "./", 0o755, owner, b"", None);
    for dir in ["./etc/", "./bin/", "./usr/", "./usr/bin/", "./home/"] {
        add(EntryType::Directory, dir, 0o755, owner, b"", None);
    }
    add(EntryType::Regular, "./etc/os-release", 0o644, owner, format!("ID={marker}\n").as_bytes(), None);
    add(EntryType::Regular, "./bin/tool", 0o755, owner, b"#!/bin/sh\necho tool\n", None);
    add(EntryType::Symlink, "./usr/bin/tool", 0o777, owner, b"", Some("../../bin/tool"));
    add(EntryType::Directory, "./home/user/", 0o700, user, b"", None);
    add(EntryType::Regular, "./home/user/notes", 0o600, user, b"mine\n", None);
    let plain = b.into_inner().expect("finish tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).expect("gzip");
    gz.finish().expect("gzip")
}

/// Declare an artifact with one file `name` holding `bytes` and upload it.
async fn upload(client: &Client, category: &str, name: &str, bytes: &[u8]) -> i64 {
    let new = NewArtifact {
        category: category.into(),
        data: obj(json!({"codename": "test", "architecture": "amd64", "variant": "minbase"})),
        files: vec![FileSpec { path: name.into(), size: bytes.len() as u64, sha256: sha256_hex(bytes) }],
        work_request: None,
    };
    let artifact = client.create_artifact(&new).await.expect("create artifact");
    client.upload_file(artifact.id, name, bytes.to_vec()).await.expect("upload");
    artifact.id
}

/// An environment owned by the test's user, usable without root.
async fn environment(client: &Client, marker: &str) -> i64 {
    upload(client, "kiln:system-tarball", "rootfs.tar.gz", &rootfs_tarball(marker, me(), me())).await
}

fn config(max_images: usize) -> ImageCacheConfig {
    ImageCacheConfig { max_images, min_free_disk: 0 }
}

fn cached_ids(cache: &ImageCache) -> Vec<i64> {
    cache.entries().iter().map(|e| e.artifact_id).collect()
}

/// The artifact ids `index.json` lists.
fn indexed_ids(dir: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(dir.join(INDEX_FILE)).expect("read index.json");
    let index: serde_json::Value = serde_json::from_str(&text).expect("index.json is JSON");
    assert_eq!(index["version"], 1);
    let entries = index["entries"].as_array().expect("entries");
    entries.iter().map(|e| e["artifact_id"].as_i64().expect("artifact_id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_acquires_download_once_and_share_a_shifted_rootfs() {
    if let Some(reason) = privileged_skip_reason() {
        println!("SKIPPED-BACKEND: {reason}");
        return;
    }
    let c = Coordinator::start();
    let user = c.user("alice");
    let tarball = rootfs_tarball("shared", 0, 1000);
    let id = upload(&user, "kiln:system-tarball", "bookworm.tar.gz", &tarball).await;
    let dir = tempfile::tempdir().expect("cache dir");
    let cache = Arc::new(ImageCache::open(dir.path(), &config(10), SHIFT).expect("open"));

    let start = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, user, start) = (Arc::clone(&cache), user.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                cache.acquire(&user, id).await
            })
        })
        .collect();
    let mut leases: Vec<ImageLease> = Vec::new();
    for task in tasks {
        leases.push(task.await.expect("join").expect("acquire"));
    }
    assert_eq!(cache.downloads(), 1, "eight concurrent acquires, one download");
    assert_eq!(cache.pin_count(id), 8);
    let rootfs = rootfs_dir(dir.path(), id);
    for lease in &leases {
        assert_eq!((lease.artifact_id, &lease.rootfs, &lease.sha256), (id, &rootfs, &sha256_hex(&tarball)));
    }
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/os-release")).expect("os-release"), "ID=shared\n");
    assert_eq!(std::fs::read_link(rootfs.join("usr/bin/tool")).expect("symlink"), Path::new("../../bin/tool"));
    let uid = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).expect("stat").uid();
    for p in ["", "etc", "etc/os-release", "bin/tool", "usr/bin/tool"] {
        assert_eq!(uid(p), SHIFT, "container root owns {p:?}");
    }
    assert_eq!((uid("home/user"), uid("home/user/notes")), (SHIFT + 1000, SHIFT + 1000));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".download-") || n.starts_with(".unpack-"))
        .collect();
    assert!(leftovers.is_empty(), "the tarball and staging dir are gone: {leftovers:?}");

    leases.clear();
    assert_eq!(cache.pin_count(id), 0, "dropping the leases unpins");
    drop(cache.acquire(&user, id).await.expect("acquire a cached image"));
    assert_eq!(cache.downloads(), 1, "a cached image is not downloaded again");
}

#[tokio::test]
async fn least_recently_used_goes_first_and_a_pinned_image_stays() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let mut ids = Vec::new();
    for marker in ["a", "b", "c", "d"] {
        ids.push(environment(&user, marker).await);
    }
    let [a, b, cc, d] = ids[..] else { panic!("four environments") };
    let dir = tempfile::tempdir().expect("cache dir");
    let cache = ImageCache::open(dir.path(), &config(2), 0).expect("open");

    let lease_a = cache.acquire(&user, a).await.expect("a");
    drop(cache.acquire(&user, b).await.expect("b"));
    drop(cache.acquire(&user, cc).await.expect("c"));
    assert_eq!(cached_ids(&cache), vec![a, cc], "b went: a is older but pinned");
    assert!(lease_a.rootfs.join("etc/os-release").exists(), "a pinned image stays on disk");
    assert!(!rootfs_dir(dir.path(), b).exists(), "b is gone from disk");
    assert_eq!(indexed_ids(dir.path()), vec![a, cc], "and from the index");

    drop(lease_a);
    drop(cache.acquire(&user, d).await.expect("d"));
    assert_eq!(cached_ids(&cache), vec![cc, d], "once unpinned, a is the least recently used");
    assert!(!rootfs_dir(dir.path(), a).exists());
    assert_eq!(indexed_ids(dir.path()), vec![cc, d]);

    // Using c makes d the least recently used.
    drop(cache.acquire(&user, cc).await.expect("c again"));
    drop(cache.acquire(&user, a).await.expect("a again"));
    assert_eq!(cached_ids(&cache), vec![a, cc]);
    assert_eq!(cache.downloads(), 5, "a was downloaded again after its eviction, c was not");
}

#[tokio::test]
async fn a_restart_keeps_the_index_and_a_corrupt_index_is_moved_aside() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let id = environment(&user, "kept").await;
    let dir = tempfile::tempdir().expect("cache dir");
    let cache = ImageCache::open(dir.path(), &config(10), 0).expect("open");
    let first = cache.acquire(&user, id).await.expect("acquire");
    let sha256 = first.sha256.clone();
    drop(first);
    assert!(ImageCache::open(dir.path(), &config(10), 0).is_err(), "one cache per directory at a time");
    drop(cache);

    let cache = ImageCache::open(dir.path(), &config(10), 0).expect("reopen");
    assert_eq!(cached_ids(&cache), vec![id]);
    let lease = cache.acquire(&user, id).await.expect("acquire after restart");
    assert_eq!((cache.downloads(), &lease.sha256), (0, &sha256), "served from the kept index");
    assert_eq!(std::fs::read_to_string(lease.rootfs.join("etc/os-release")).expect("read"), "ID=kept\n");
    drop(lease);
    drop(cache);

    std::fs::write(dir.path().join(INDEX_FILE), b"{\"version\": 1, \"entries\": [{\"artifact").expect("corrupt");
    let cache = ImageCache::open(dir.path(), &config(10), 0).expect("a corrupt index does not stop the cache");
    assert!(cache.entries().is_empty());
    let names: HashSet<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("index.json.corrupt-")), "moved aside: {names:?}");
    assert!(!names.contains(&id.to_string()), "the unknown image dir was removed: {names:?}");
    assert_eq!(indexed_ids(dir.path()), Vec::<i64>::new(), "a fresh index was written");
    drop(cache.acquire(&user, id).await.expect("downloaded again"));
    assert_eq!(cache.downloads(), 1);
}

#[tokio::test]
async fn wrong_unfinished_missing_and_hostile_artifacts_fail_with_a_code() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let dir = tempfile::tempdir().expect("cache dir");
    let cache = Arc::new(ImageCache::open(dir.path(), &config(10), 0).expect("open"));

    let disk = upload(&user, "kiln:system-image", "disk.qcow2", b"QFI\xfb").await;
    let err = cache.acquire(&user, disk).await.expect_err("a disk image is not a tarball");
    assert_eq!(err.code(), "image-wrong-category");
    assert!(err.to_string().contains("kiln:system-image"), "{err}");

    let new = NewArtifact {
        category: "kiln:system-tarball".into(),
        data: obj(json!({})),
        files: vec![FileSpec { path: "r.tar".into(), size: 3, sha256: sha256_hex(b"abc") }],
        work_request: None,
    };
    let unfinished = user.create_artifact(&new).await.expect("declare").id;
    assert_eq!(cache.acquire(&user, unfinished).await.expect_err("not uploaded").code(), "image-incomplete");
    assert_eq!(cache.acquire(&user, 999_999).await.expect_err("no such artifact").code(), "image-not-found");
    assert_eq!(cache.downloads(), 0);

    // `../evil` written into the raw header, past the tar crate's own checks.
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..7].copy_from_slice(b"../evil");
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(me());
    h.set_size(5);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"evil\n"[..]).expect("append");
    let hostile = upload(&user, "kiln:system-tarball", "evil.tar", &b.into_inner().expect("tar")).await;
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (cache, user) = (Arc::clone(&cache), user.clone());
            tokio::spawn(async move { cache.acquire(&user, hostile).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.expect("join").expect_err("refused");
        assert_eq!(err.code(), "image-unsafe", "{err}");
        assert!(err.to_string().contains("../evil"), "the entry is named: {err}");
    }
    assert_eq!(cache.downloads(), 1, "waiters share the failure of the one download");
    assert!(!dir.path().parent().expect("parent").join("evil").exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != INDEX_FILE && n != ".lock")
        .collect();
    assert!(names.is_empty(), "nothing left behind: {names:?}");
    assert!(cache.entries().is_empty());
}
