//! The task's output files, sent by the guest as a tar stream of
//! `/kiln/output`, unpacked into the task directory. The stream was made by
//! untrusted code: only regular files and directories are taken, paths stay
//! inside the destination, nothing is followed or replaced.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Most files taken (as the other backends).
const MAX_FILES: usize = 10_000;

/// A relative path with only normal components, or `None`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Create `rel`'s directories under `dest`, refusing anything that is not
/// a real directory on the way.
fn make_dirs(dest: &Path, rel: &Path) -> std::io::Result<()> {
    let mut path = dest.to_owned();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(std::io::Error::other(format!("{} is not a directory", path.display()))),
            Err(_) => std::fs::create_dir(&path)?,
        }
    }
    Ok(())
}

/// Unpack `tar` (which may be missing: no output) into `dest`; the number of files.
pub fn unpack_output(tar: &Path, dest: &Path) -> std::io::Result<usize> {
    let file = match std::fs::File::open(tar) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    std::fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(file);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = clean(&entry.path()?) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => make_dirs(dest, &rel)?,
            tar::EntryType::Regular | tar::EntryType::Continuous if count < MAX_FILES => {
                if let Some(parent) = rel.parent() {
                    make_dirs(dest, parent)?;
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o644)
                    .open(dest.join(&rel))?;
                std::io::copy(&mut (&mut entry).take(u64::MAX), &mut out)?;
                count += 1;
            }
            _ => {}
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_and_directories_inside_are_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        let tar_path = dir.path().join("out.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).expect("create"));
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).expect("link");
            }
            h.set_path(path).expect("path");
            h.set_cksum();
            b.append(&h, data).expect("append");
        };
        add("./", tar::EntryType::Directory, b"", None);
        add("./result.txt", tar::EntryType::Regular, b"hello\n", None);
        add("./sub/x", tar::EntryType::Regular, b"deep\n", None);
        add("./leak", tar::EntryType::Symlink, b"", Some("/etc/shadow"));
        b.finish().expect("finish");
        drop(b);
        let dest = dir.path().join("output");
        assert_eq!(unpack_output(&tar_path, &dest).expect("unpack"), 2);
        assert_eq!(std::fs::read_to_string(dest.join("result.txt")).expect("read"), "hello\n");
        assert_eq!(std::fs::read_to_string(dest.join("sub/x")).expect("read"), "deep\n");
        assert!(std::fs::symlink_metadata(dest.join("leak")).is_err());
        assert_eq!(unpack_output(&dir.path().join("missing.tar"), &dest).expect("none"), 0);
        assert!(clean(Path::new("../x")).is_none() && clean(Path::new("/etc/x")).is_none());
    }
}
