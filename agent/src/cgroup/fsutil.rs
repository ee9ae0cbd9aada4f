//! Reading and writing cgroupfs files, every error naming its path.
//!
//! Control files are opened without `O_CREAT`: the kernel creates them with
//! the directory, so a missing file means "no such controller here" (and a
//! plain directory standing in for a cgroup is never mistaken for one).

use super::CgroupError;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often, and how long apart, `rmdir` is retried while the kernel still
/// says EBUSY (exiting tasks are released asynchronously).
const RMDIR_TRIES: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(20);

pub(crate) fn read_string(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_owned(), source })
}

/// Whitespace-separated words, as in `cgroup.controllers`.
pub(crate) fn read_words(path: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(read_string(path)?.split_whitespace().map(str::to_owned).collect())
}

/// One number, as in `memory.peak`.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_string(path)?;
    text.trim().parse().map_err(|e| CgroupError::Parse { path: path.to_owned(), detail: format!("{text:?}: {e}") })
}

/// The value of `key` in a flat keyed file (`key value` lines), as in
/// `memory.events` or `memory.oom_control`; `None` when the key is absent.
pub(crate) fn read_key(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read_string(path)?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            let value = words.next().unwrap_or("");
            return value
                .parse()
                .map(Some)
                .map_err(|e| CgroupError::Parse { path: path.to_owned(), detail: format!("{key} {value:?}: {e}") });
        }
    }
    Ok(None)
}

/// The pids in a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read_string(path)?;
    text.split_whitespace()
        .map(|word| match word.parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(CgroupError::Parse { path: path.to_owned(), detail: format!("not a pid: {word:?}") }),
        })
        .collect()
}

/// Writes `value` to an existing control file in one `write(2)`.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let error = |source| CgroupError::Write { path: path.to_owned(), value: value.to_owned(), source };
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(error)?;
    file.write_all(value.as_bytes()).map_err(error)
}

/// Creates `path` (not its parents); it must not exist yet.
pub(crate) fn mkdir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir(path).map_err(|source| CgroupError::Create { path: path.to_owned(), source })
}

/// Creates `path` unless it is already there.
pub(crate) fn mkdir_if_missing(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other.map_err(|source| CgroupError::Create { path: path.to_owned(), source }),
    }
}

/// Removes the cgroup directory `path`, retrying briefly on EBUSY; a
/// directory that is already gone is fine.
pub(crate) fn rmdir(path: &Path) -> Result<(), CgroupError> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < RMDIR_TRIES => {
                tries += 1;
                std::thread::sleep(RMDIR_PAUSE);
            }
            Err(source) => return Err(CgroupError::Remove { path: path.to_owned(), source }),
        }
    }
}

/// Removes every directory in `paths`, reporting the first failure.
pub(crate) fn rmdir_all(paths: &[PathBuf]) -> Result<(), CgroupError> {
    let mut first = Ok(());
    for path in paths {
        if let Err(e) = rmdir(path) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keyed_files_and_pid_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 3\n").expect("write");
        assert_eq!(read_key(&events, "oom_kill").expect("read"), Some(3));
        assert_eq!(read_key(&events, "oom").expect("read"), Some(1));
        assert_eq!(read_key(&events, "oom_group_kill").expect("read"), None);
        let procs = dir.path().join("cgroup.procs");
        std::fs::write(&procs, "12\n345\n").expect("write");
        assert_eq!(read_pids(&procs).expect("read"), vec![12, 345]);
        std::fs::write(&procs, "12\n0\n").expect("write");
        assert!(read_pids(&procs).is_err(), "pid 0 would make kill(2) signal our own group");
    }

    #[test]
    fn writes_only_existing_files_and_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("memory.max");
        let err = write(&missing, "1024").expect_err("control files are never created");
        assert!(err.to_string().contains("memory.max"), "{err}");
        assert!(!missing.exists());
        let gone = dir.path().join("gone");
        rmdir(&gone).expect("an absent directory is removed already");
        mkdir_if_missing(&gone).expect("create");
        mkdir_if_missing(&gone).expect("twice is fine");
        assert!(mkdir(&gone).is_err());
        rmdir_all(std::slice::from_ref(&gone)).expect("remove");
        assert!(!gone.exists());
    }
}
