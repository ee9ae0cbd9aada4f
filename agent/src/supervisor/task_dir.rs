//! A task's directory: the contract between the agent daemon and the task's
//! shim. The daemon writes `task.json` and `config.json` (the OCI spec) and
//! starts the shim; the shim writes `log.jsonl` as output arrives, the task's
//! files land in `output/`, and `status.json` appears (atomically) when the
//! task is over. Nothing else passes between them, so either can restart
//! without the other noticing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATUS_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct TaskDir {
    pub path: PathBuf,
}

impl TaskDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TaskDir { path: path.into() }
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn task(&self) -> PathBuf {
        self.path.join("task.json")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log.jsonl")
    }
    pub fn status(&self) -> PathBuf {
        self.path.join("status.json")
    }
    pub fn output(&self) -> PathBuf {
        self.path.join("output")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
    /// The finished task's status, once the shim has written it.
    pub fn read_status(&self) -> std::io::Result<Option<ShimStatus>> {
        match std::fs::read(self.status()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How the sandboxed task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The command ran and exited (see `exit_code`).
    Exited,
    TimedOut,
    /// Stopped on request (the coordinator aborted it).
    Aborted,
    /// The sandbox could not be set up: an infrastructure error.
    SetupFailed,
}

/// `status.json`, written once by the shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimStatus {
    pub version: u32,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub setup_error: Option<String>,
    pub memory_peak: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, rename, fsync of the directory. Survives power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replacing(path, bytes, true)
}

/// Like [`write_atomic`] without the fsyncs: the rename is still atomic, so
/// a crash or `kill -9` of any process leaves the old or the new content,
/// never a mix; only a power loss may lose it. For state that a reboot makes
/// moot anyway (a running shim does not survive one), at a fraction of the
/// cost (an fsync is ~12 ms on the build machine's disk).
pub fn write_atomic_relaxed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, path)?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tmp");
        let td = TaskDir::new(dir.path());
        assert_eq!(td.read_status().expect("read"), None);
        let status = ShimStatus {
            version: STATUS_VERSION,
            outcome: Outcome::TimedOut,
            exit_code: Some(137),
            oom_killed: false,
            setup_error: None,
            memory_peak: Some(1),
            started_at: Utc::now(),
            finished_at: Utc::now(),
        };
        write_atomic(&td.status(), &serde_json::to_vec(&status).expect("json")).expect("write");
        assert_eq!(td.read_status().expect("read"), Some(status));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "no temp file left");
    }
}
