//! Safe extraction of environment tarballs (`kiln:system-tarball`, usually
//! made by mmdebstrap) into a fresh directory.
//!
//! The `tar` crate only reads the entries; every file, directory and link is
//! created here, because a hostile tarball must not be able to write outside
//! the destination: no absolute paths or `..`, never a write through a
//! symlink (each parent must be a real directory this extraction created,
//! files are opened with `O_CREAT|O_EXCL|O_NOFOLLOW`), no relative symlink
//! that points out of the tree, hard links only to earlier regular files.
//! Device nodes are skipped (the sandbox provides its own /dev). Ownership is
//! shifted by `id_shift` for user-namespace backends.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::AtFlags;
use nix::sys::stat::{utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, mkfifo, Gid, Uid};
use tar::EntryType;

mod rules;
#[cfg(test)]
mod tests;

use rules::{decompressed, escapes, normalise};
pub use rules::{detect, shift_id, Compression, ID_RANGE};

/// What an extraction created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub fifos: u64,
    /// Character and block devices, which are never created.
    pub skipped_devices: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The stream is not a readable (compressed) tarball.
    #[error("failed to read the tarball: {0}")]
    Archive(#[source] io::Error),
    /// The tarball tries something this extraction refuses.
    #[error("refusing tarball entry {entry:?}: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("failed to extract {entry:?} to {path}: {source}")]
    Io { entry: String, path: PathBuf, source: io::Error },
}

/// Extract the (possibly compressed) tarball read from `reader` into `dest`,
/// which must not exist yet or be an empty directory.
pub fn unpack(reader: impl Read, dest: &Path, id_shift: u32) -> Result<ExtractStats, ExtractError> {
    let mut x = Extractor::new(dest, id_shift)?;
    let mut archive = tar::Archive::new(decompressed(reader)?);
    for entry in archive.entries().map_err(ExtractError::Archive)? {
        let mut entry = entry.map_err(ExtractError::Archive)?;
        x.entry(&mut entry)?;
    }
    x.finish()
}

/// Ownership, mode and mtime of an entry, already shifted and masked.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// `None`: leave as created (by the extracting user).
    uid: Option<Uid>,
    gid: Option<Gid>,
    mode: u32,
    mtime: SystemTime,
}

struct Extractor<'d> {
    dest: &'d Path,
    id_shift: u32,
    /// Directories this extraction created, relative to `dest` ("" is `dest`).
    dirs: HashSet<PathBuf>,
    /// Regular files this extraction created: the only hard link targets.
    files: HashSet<PathBuf>,
    /// Mode and mtime of directories, applied at the end so that creating
    /// their children neither fails on a read-only mode nor moves the mtime.
    dir_meta: HashMap<PathBuf, Meta>,
    stats: ExtractStats,
}

impl<'d> Extractor<'d> {
    fn new(dest: &'d Path, id_shift: u32) -> Result<Self, ExtractError> {
        let io_err = |source| ExtractError::Io { entry: String::new(), path: dest.to_owned(), source };
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {
                if fs::read_dir(dest).map_err(io_err)?.next().is_some() {
                    return Err(io_err(io::Error::new(io::ErrorKind::AlreadyExists, "destination is not empty")));
                }
            }
            Ok(_) => return Err(io_err(io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(dest).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        }
        let x = Extractor {
            dest,
            id_shift,
            dirs: HashSet::from([PathBuf::new()]),
            files: HashSet::new(),
            dir_meta: HashMap::new(),
            stats: ExtractStats::default(),
        };
        // The root belongs to the container's root until a `./` entry says otherwise.
        let root = x.root_meta(SystemTime::now());
        x.set_dir_owner(Path::new(""), "./", root)?;
        Ok(x)
    }

    /// Metadata of a directory the tarball did not describe: owned by the
    /// container's root, which without a shift is whoever extracts.
    fn root_meta(&self, mtime: SystemTime) -> Meta {
        let shifted = self.id_shift > 0;
        let uid = shifted.then(|| Uid::from_raw(self.id_shift));
        let gid = shifted.then(|| Gid::from_raw(self.id_shift));
        Meta { uid, gid, mode: 0o755, mtime }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), ExtractError> {
        let raw_bytes = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_bytes).into_owned();
        let rel = normalise(Path::new(OsStr::from_bytes(&raw_bytes))).map_err(|r| unsafe_entry(&name, r))?;
        let mut kind = entry.header().entry_type();
        // Old (pre-POSIX) tarballs mark directories by a trailing slash only.
        if kind == EntryType::Regular && raw_bytes.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        match kind {
            EntryType::Char | EntryType::Block => {
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            EntryType::XGlobalHeader => return Ok(()),
            _ => {}
        }
        let meta = self.meta(entry.header(), &name)?;
        if rel.as_os_str().is_empty() {
            return match kind {
                EntryType::Directory => self.directory(&rel, &name, meta),
                _ => Err(unsafe_entry(&name, "an empty path names only the root directory")),
            };
        }
        self.make_parents(&rel, &name)?;
        match kind {
            EntryType::Directory => self.directory(&rel, &name, meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => self.file(entry, &rel, &name, meta),
            EntryType::Symlink => self.symlink(&entry.link_name_bytes().unwrap_or_default(), &rel, &name, meta),
            EntryType::Link => self.hardlink(&entry.link_name_bytes().unwrap_or_default(), &rel, &name),
            EntryType::Fifo => self.fifo(&rel, &name, meta),
            other => Err(unsafe_entry(&name, &format!("unsupported entry type {other:?}"))),
        }
    }

    fn meta(&self, header: &tar::Header, name: &str) -> Result<Meta, ExtractError> {
        let id = |value: io::Result<u64>, what: &str| -> Result<u32, ExtractError> {
            let value = value.map_err(ExtractError::Archive)?;
            shift_id(value, self.id_shift).ok_or_else(|| {
                unsafe_entry(name, &format!("{what} {value} is outside the mappable range 0..{ID_RANGE}"))
            })
        };
        let uid = Some(Uid::from_raw(id(header.uid(), "uid")?));
        let gid = Some(Gid::from_raw(id(header.gid(), "gid")?));
        let mode = header.mode().map_err(ExtractError::Archive)? & 0o7777;
        let secs = header.mtime().map_err(ExtractError::Archive)?;
        let mtime = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| unsafe_entry(name, &format!("mtime {secs} is out of range")))?;
        Ok(Meta { uid, gid, mode, mtime })
    }

    /// Check (and create where missing) every parent of `rel`: each must be
    /// a real directory made by this extraction, never a symlink.
    fn make_parents(&mut self, rel: &Path, name: &str) -> Result<(), ExtractError> {
        let mut cur = PathBuf::new();
        for part in rel.parent().map(Path::components).into_iter().flatten() {
            cur.push(part);
            let full = self.dest.join(&cur);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(name, &format!("its parent {} is a symlink", cur.display())));
                }
                Ok(m) if m.is_dir() && self.dirs.contains(&cur) => {}
                Ok(_) => {
                    return Err(unsafe_entry(name, &format!("its parent {} is not a directory", cur.display())));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let meta = self.root_meta(SystemTime::now());
                    self.directory(&cur, name, meta)?;
                }
                Err(e) => return Err(io_error(name, &full, e)),
            }
        }
        Ok(())
    }

    /// Make room for a non-directory at `rel`: a later entry replaces an
    /// earlier non-directory (as tar does), never a directory.
    fn clear(&mut self, rel: &Path, name: &str) -> Result<PathBuf, ExtractError> {
        let full = self.dest.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => Err(unsafe_entry(name, "it would replace a directory")),
            Ok(_) => {
                self.files.remove(rel);
                fs::remove_file(&full).map_err(|e| io_error(name, &full, e))?;
                Ok(full)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(full),
            Err(e) => Err(io_error(name, &full, e)),
        }
    }

    fn directory(&mut self, rel: &Path, name: &str, meta: Meta) -> Result<(), ExtractError> {
        let full = self.dest.join(rel);
        if !self.dirs.contains(rel) {
            match fs::DirBuilder::new().mode(0o700).create(&full) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(unsafe_entry(name, "it would replace a non-directory"));
                }
                Err(e) => return Err(io_error(name, &full, e)),
            }
            self.dirs.insert(rel.to_owned());
            self.stats.dirs += 1;
        }
        self.set_dir_owner(rel, name, meta)?;
        self.dir_meta.insert(rel.to_owned(), meta);
        Ok(())
    }

    /// Open a directory of ours without following a symlink.
    fn open_dir(&self, rel: &Path, name: &str) -> Result<File, ExtractError> {
        let full = self.dest.join(rel);
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&full)
            .map_err(|e| io_error(name, &full, e))
    }

    fn set_dir_owner(&self, rel: &Path, name: &str, meta: Meta) -> Result<(), ExtractError> {
        let dir = self.open_dir(rel, name)?;
        fchown(dir.as_raw_fd(), meta.uid, meta.gid).map_err(|e| io_error(name, &self.dest.join(rel), e.into()))
    }

    fn file<R: Read>(&mut self, data: &mut R, rel: &Path, name: &str, meta: Meta) -> Result<(), ExtractError> {
        let full = self.clear(rel, name)?;
        let fail = |e: io::Error| io_error(name, &full, e);
        // O_EXCL never follows a symlink; O_NOFOLLOW says so twice.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&full)
            .map_err(fail)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ExtractError::Archive(e)),
            };
            file.write_all(&buf[..n]).map_err(fail)?;
            self.stats.bytes += n as u64;
        }
        // chown clears setuid/setgid, so the mode comes after it.
        fchown(file.as_raw_fd(), meta.uid, meta.gid).map_err(|e| fail(e.into()))?;
        file.set_permissions(Permissions::from_mode(meta.mode)).map_err(fail)?;
        file.set_modified(meta.mtime).map_err(fail)?;
        self.files.insert(rel.to_owned());
        self.stats.files += 1;
        Ok(())
    }

    fn symlink(&mut self, target: &[u8], rel: &Path, name: &str, meta: Meta) -> Result<(), ExtractError> {
        let target = Path::new(OsStr::from_bytes(target));
        if target.as_os_str().is_empty() {
            return Err(unsafe_entry(name, "symlink without a target"));
        }
        if escapes(rel, target) {
            return Err(unsafe_entry(name, &format!("symlink target {} leaves the image", target.display())));
        }
        let full = self.clear(rel, name)?;
        std::os::unix::fs::symlink(target, &full).map_err(|e| io_error(name, &full, e))?;
        self.set_path_meta(&full, name, meta, false)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, target: &[u8], rel: &Path, name: &str) -> Result<(), ExtractError> {
        let target = normalise(Path::new(OsStr::from_bytes(target)))
            .map_err(|r| unsafe_entry(name, &format!("hard link target: {r}")))?;
        if target == rel {
            return Err(unsafe_entry(name, "hard link to itself"));
        }
        let source = self.dest.join(&target);
        let is_file = fs::symlink_metadata(&source).map(|m| m.is_file()).unwrap_or(false);
        if !self.files.contains(&target) || !is_file {
            let why = format!("hard link target {} is not an earlier regular file", target.display());
            return Err(unsafe_entry(name, &why));
        }
        let full = self.clear(rel, name)?;
        // linkat(2) without AT_SYMLINK_FOLLOW links the entry itself.
        fs::hard_link(&source, &full).map_err(|e| io_error(name, &full, e))?;
        self.files.insert(rel.to_owned());
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn fifo(&mut self, rel: &Path, name: &str, meta: Meta) -> Result<(), ExtractError> {
        let full = self.clear(rel, name)?;
        mkfifo(&full, Mode::from_bits_truncate(0o600)).map_err(|e| io_error(name, &full, e.into()))?;
        self.set_path_meta(&full, name, meta, true)?;
        self.stats.fifos += 1;
        Ok(())
    }

    /// Owner, mode (unless a symlink) and mtime of something just created at
    /// `full`, without following a symlink.
    fn set_path_meta(&self, full: &Path, name: &str, meta: Meta, chmod: bool) -> Result<(), ExtractError> {
        let fail = |e: nix::Error| io_error(name, full, e.into());
        fchownat(None, full, meta.uid, meta.gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail)?;
        if chmod {
            // Only ever called on a fifo created a moment ago by this extraction.
            fs::set_permissions(full, Permissions::from_mode(meta.mode)).map_err(|e| io_error(name, full, e))?;
        }
        let secs = meta.mtime.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let time = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        utimensat(None, full, &time, &time, UtimensatFlags::NoFollowSymlink).map_err(fail)
    }

    /// Apply directory modes and mtimes, deepest first.
    fn finish(mut self) -> Result<ExtractStats, ExtractError> {
        let mut dirs: Vec<(PathBuf, Meta)> = self.dir_meta.drain().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let name = rel.display().to_string();
            let dir = self.open_dir(&rel, &name)?;
            let fail = |e| io_error(&name, &self.dest.join(&rel), e);
            dir.set_permissions(Permissions::from_mode(meta.mode)).map_err(fail)?;
            dir.set_modified(meta.mtime).map_err(fail)?;
        }
        Ok(self.stats)
    }
}

fn unsafe_entry(name: &str, reason: &str) -> ExtractError {
    ExtractError::Unsafe { entry: name.to_owned(), reason: reason.to_owned() }
}

fn io_error(name: &str, path: &Path, source: io::Error) -> ExtractError {
    ExtractError::Io { entry: name.to_owned(), path: path.to_owned(), source }
}
