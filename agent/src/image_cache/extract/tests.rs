//! Hostile and well-formed tarballs, built here with raw headers so that the
//! `tar` crate's own path checks cannot stop the hostile ones being written.
//! Entries belong to the user running the tests, so that they pass without
//! root; shifting ids and foreign owners are checked only as root.

use super::*;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tar::{Builder, Header};

const MTIME: u64 = 1_700_000_000;

/// The uid (and, as far as these tests care, gid) of the test process.
fn me() -> u64 {
    u64::from(nix::unistd::geteuid().as_raw())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tarball under construction.
struct Tarball(Builder<Vec<u8>>);

impl Tarball {
    fn new() -> Self {
        Tarball(Builder::new(Vec::new()))
    }

    /// Append an entry whose name and link name are copied byte for byte.
    fn raw(&mut self, kind: EntryType, name: &str, link: &str, mode: u32, ids: u64, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(mode);
        h.set_uid(ids);
        h.set_gid(if ids == me() { u64::from(nix::unistd::getegid().as_raw()) } else { ids });
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).expect("append to an in-memory tarball");
        self
    }
    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(EntryType::Directory, name, "", mode, me(), b"")
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name, "", 0o644, me(), data)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Symlink, name, target, 0o777, me(), b"")
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, name, target, 0o644, me(), b"")
    }
    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, Builder::new(Vec::new())).into_inner().expect("finish the tarball")
    }
}

/// A temporary root holding `dest` (the extraction) and `outside` (which
/// must stay empty), and nothing else.
struct Scene {
    root: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir(root.path().join("outside")).expect("outside dir");
        Scene { root }
    }
    fn dest(&self) -> PathBuf {
        self.root.path().join("dest")
    }
    fn outside(&self) -> String {
        self.root.path().join("outside").display().to_string()
    }
    fn unpack(&self, tarball: &[u8], id_shift: u32) -> Result<ExtractStats, ExtractError> {
        unpack(tarball, &self.dest(), id_shift)
    }
    /// Nothing was written beside `dest` or into `outside`.
    fn assert_contained(&self) {
        let mut names: Vec<_> = fs::read_dir(self.root.path())
            .expect("list root")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names == ["dest", "outside"] || names == ["outside"], "written beside dest: {names:?}");
        let inside: Vec<_> = fs::read_dir(self.outside()).expect("list outside").collect();
        assert!(inside.is_empty(), "written outside dest: {inside:?}");
    }
}

/// Assert an `Unsafe` error naming `entry` whose reason mentions `why`.
fn assert_refused(result: Result<ExtractStats, ExtractError>, entry: &str, why: &str) {
    match result {
        Err(ExtractError::Unsafe { entry: e, reason }) => {
            assert_eq!(e, entry, "entry named in the error ({reason})");
            assert!(reason.contains(why), "reason {reason:?} should mention {why:?}");
        }
        other => panic!("expected {entry} to be refused ({why}), got {other:?}"),
    }
}

#[test]
fn dotdot_escape_is_refused() {
    let scene = Scene::new();
    let tar = Tarball::new().dir("./", 0o755).file("../evil", b"x").bytes();
    assert_refused(scene.unpack(&tar, 0), "../evil", "`..`");
    let tar = Tarball::new().file("a/../../evil", b"x").bytes();
    let scene2 = Scene::new();
    assert_refused(scene2.unpack(&tar, 0), "a/../../evil", "`..`");
    scene.assert_contained();
    scene2.assert_contained();
}

#[test]
fn absolute_path_is_refused() {
    let scene = Scene::new();
    let name = format!("{}/abs", scene.outside());
    let tar = Tarball::new().file(&name, b"x").bytes();
    assert_refused(scene.unpack(&tar, 0), &name, "absolute");
    scene.assert_contained();
}

#[test]
fn writing_through_a_symlink_is_refused() {
    for (kind, entry) in
        [(EntryType::Regular, "link/pwned"), (EntryType::Directory, "link/sub/"), (EntryType::Symlink, "link/ln")]
    {
        let scene = Scene::new();
        let mut tar = Tarball::new();
        // An absolute symlink is fine in itself: it resolves inside the container.
        tar.symlink("link", &scene.outside());
        tar.raw(kind, entry, "/etc/shadow", 0o644, me(), b"");
        assert_refused(scene.unpack(&tar.bytes(), 0), entry, "is a symlink");
        scene.assert_contained();
    }
}

#[test]
fn a_later_entry_replaces_a_symlink_instead_of_following_it() {
    let scene = Scene::new();
    let target = format!("{}/victim", scene.outside());
    let tar = Tarball::new().symlink("f", &target).file("f", b"mine").bytes();
    scene.unpack(&tar, 0).expect("replacing an earlier entry is allowed");
    let meta = fs::symlink_metadata(scene.dest().join("f")).expect("f");
    assert!(meta.is_file(), "f is now a regular file");
    assert_eq!(fs::read(scene.dest().join("f")).expect("read f"), b"mine");
    scene.assert_contained();
}

#[test]
fn escaping_relative_symlinks_are_refused_and_contained_ones_kept() {
    let scene = Scene::new();
    let tar = Tarball::new().symlink("a/b/up", "../../../outside").bytes();
    assert_refused(scene.unpack(&tar, 0), "a/b/up", "leaves the image");
    scene.assert_contained();

    let scene = Scene::new();
    let tar = Tarball::new().symlink("top", "..").bytes();
    assert_refused(scene.unpack(&tar, 0), "top", "leaves the image");

    let scene = Scene::new();
    let tar =
        Tarball::new().symlink("usr/lib/passwd", "../../etc/passwd").symlink("usr/self", "./.././usr/x/../").bytes();
    scene.unpack(&tar, 0).expect("links that stay inside are fine");
    let got = fs::read_link(scene.dest().join("usr/lib/passwd")).expect("readlink");
    assert_eq!(got, Path::new("../../etc/passwd"));
    scene.assert_contained();
}

#[test]
fn hard_links_must_name_an_earlier_regular_file_inside() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Tarball::new().hardlink("hl", "../outside/secret").bytes(), "`..`"),
        (Tarball::new().hardlink("hl", "/etc/passwd").bytes(), "absolute"),
        (Tarball::new().hardlink("hl", "later").file("later", b"x").bytes(), "not an earlier regular file"),
        (Tarball::new().symlink("sl", "/etc/passwd").hardlink("hl", "sl").bytes(), "not an earlier regular file"),
        (Tarball::new().dir("d/", 0o755).hardlink("hl", "d").bytes(), "not an earlier regular file"),
        (Tarball::new().file("hl", b"x").hardlink("hl", "./hl").bytes(), "itself"),
    ];
    for (tar, why) in cases {
        let scene = Scene::new();
        assert_refused(scene.unpack(&tar, 0), "hl", why);
        scene.assert_contained();
    }
}

#[test]
fn device_nodes_are_skipped_and_counted() {
    let scene = Scene::new();
    let tar = Tarball::new()
        .dir("./dev/", 0o755)
        .raw(EntryType::Char, "./dev/null", "", 0o666, 0, b"")
        .raw(EntryType::Block, "./dev/sda", "", 0o660, 0, b"")
        .file("./etc/hostname", b"kiln\n")
        .bytes();
    let stats = scene.unpack(&tar, 0).expect("a tarball with devices unpacks");
    assert_eq!(stats.skipped_devices, 2);
    assert_eq!(stats.files, 1);
    assert!(scene.dest().join("dev").is_dir());
    assert!(fs::symlink_metadata(scene.dest().join("dev/null")).is_err(), "no device node created");
    scene.assert_contained();
}

#[test]
fn ids_outside_the_mapped_range_are_refused_when_shifting() {
    if !is_root() {
        println!("SKIPPED-BACKEND: shifting ids needs root");
        return;
    }
    let tar = Tarball::new().raw(EntryType::Regular, "f", "", 0o644, 70_000, b"x").bytes();
    let scene = Scene::new();
    assert_refused(scene.unpack(&tar, 100_000), "f", "uid 70000");
    let scene = Scene::new();
    scene.unpack(&tar, 0).expect("without a shift, ids are kept as they are");
    assert_eq!(fs::metadata(scene.dest().join("f")).expect("f").uid(), 70_000);
}

#[test]
fn destination_must_be_new_or_empty() {
    let scene = Scene::new();
    fs::create_dir(scene.dest()).expect("dest");
    fs::write(scene.dest().join("old"), b"x").expect("old file");
    assert!(matches!(scene.unpack(&Tarball::new().bytes(), 0), Err(ExtractError::Io { .. })));
    let scene = Scene::new();
    std::os::unix::fs::symlink(scene.outside(), scene.dest()).expect("dest symlink");
    assert!(scene.unpack(&Tarball::new().file("f", b"x").bytes(), 0).is_err());
    assert!(fs::read_dir(scene.outside()).expect("outside").next().is_none());
}

#[test]
fn garbage_is_an_archive_error() {
    let scene = Scene::new();
    let garbage = vec![0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7];
    assert!(matches!(scene.unpack(&garbage, 0), Err(ExtractError::Archive(_))));
}

/// A small but complete root tree touching every kind of entry; `owner`
/// stands for root, `user` for an ordinary user.
fn good_tree(owner: u64, user: u64) -> Vec<u8> {
    Tarball::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/hostname", b"kiln\n")
        .dir("./usr/bin/", 0o755)
        .raw(EntryType::Regular, "./usr/bin/su", "", 0o4755, owner, b"#!/bin/sh\n")
        .symlink("./usr/bin/sh", "dash")
        .raw(EntryType::Regular, "./usr/bin/dash", "", 0o755, owner, b"ELF")
        .symlink("./etc/alternatives/x", "/usr/bin/dash")
        .hardlink("./usr/bin/dash2", "./usr/bin/dash")
        .dir("./dev/", 0o755)
        .raw(EntryType::Char, "./dev/null", "", 0o666, owner, b"")
        .raw(EntryType::Fifo, "./run/initctl", "", 0o600, owner, b"")
        .dir("./tmp/", 0o1777)
        .raw(EntryType::Directory, "./home/user/", "", 0o700, user, b"")
        .raw(EntryType::Regular, "./home/user/.profile", "", 0o644, user, b"PS1='$ '\n")
        .dir("./ro/", 0o555)
        .file("./ro/f", b"read-only dir, written anyway")
        .bytes()
}

/// Check the tree; `owner` and `user` are the host ids expected.
fn check_good_tree(dest: &Path, owner: u32, user: u32) {
    let meta = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(fs::read(dest.join("etc/hostname")).expect("hostname"), b"kiln\n");
    assert_eq!(meta("usr/bin/su").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777, "sticky dir");
    assert_eq!(meta("ro").mode() & 0o7777, 0o555);
    assert_eq!(fs::read_link(dest.join("usr/bin/sh")).expect("sh"), Path::new("dash"));
    assert_eq!(fs::read_link(dest.join("etc/alternatives/x")).expect("x"), Path::new("/usr/bin/dash"));
    assert_eq!(meta("usr/bin/dash2").ino(), meta("usr/bin/dash").ino(), "hard link");
    assert!(meta("run/initctl").file_type().is_fifo());
    assert!(fs::symlink_metadata(dest.join("dev/null")).is_err());
    for p in ["etc/hostname", "usr/bin/su", "etc", "ro", "tmp", "usr/bin/sh", "run/initctl"] {
        assert_eq!(meta(p).mtime(), MTIME as i64, "mtime of {p}");
    }
    // Implicit parents (usr, run, etc/alternatives) belong to the container's root.
    for p in ["", "etc/hostname", "usr/bin/sh", "run/initctl", "usr", "etc/alternatives", "usr/bin/su"] {
        assert_eq!(meta(p).uid(), owner, "owner of {p:?}");
    }
    assert_eq!(meta("home/user/.profile").uid(), user);
    assert_eq!(meta("home/user").uid(), user);
}

#[test]
fn a_good_tree_unpacks_in_every_compression() {
    // As root: real root and user ids, also shifted; otherwise our own ids, unshifted.
    let (owner, user, shifts) = if is_root() { (0, 1000, vec![0, 100_000]) } else { (me(), me(), vec![0]) };
    if !is_root() {
        println!("SKIPPED-BACKEND: shifted and foreign ownership needs root");
    }
    let plain = good_tree(owner, user);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).expect("gzip");
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&plain).expect("xz");
    let zst = zstd::encode_all(&plain[..], 3).expect("zstd");
    let variants = [
        ("plain", plain.clone()),
        ("gzip", gz.finish().expect("gzip")),
        ("xz", xz.finish().expect("xz")),
        ("zstd", zst),
    ];
    for (what, bytes) in variants {
        for &shift in &shifts {
            let scene = Scene::new();
            let stats = scene.unpack(&bytes, shift).unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected = ExtractStats {
                files: 5,
                dirs: 10,
                symlinks: 2,
                hardlinks: 1,
                fifos: 1,
                skipped_devices: 1,
                bytes: (5 + 10 + 3 + 9 + 29) as u64,
            };
            assert_eq!(stats, expected, "{what}");
            let host = |id: u64| u32::try_from(id).expect("small id") + shift;
            check_good_tree(&scene.dest(), host(owner), host(user));
            scene.assert_contained();
        }
    }
}
