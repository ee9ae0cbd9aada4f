//! The agent's journal of its tasks: one versioned record per attempt in
//! `<data-dir>/journal/`, written atomically (temp, fsync, rename). After a
//! restart the agent reads every record, checks it against reality, and
//! carries on where it was: it re-attaches to a live shim, resumes shipping
//! the log after the acknowledged seq, uploads what was not uploaded and
//! reports a result that was not reported. A record that cannot be read is
//! moved aside with a log line and never stops the agent from starting.

use super::process::ProcessRef;
use super::task_dir::{write_atomic, write_atomic_relaxed};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub const RECORD_VERSION: u32 = 1;

/// One attempt the agent has taken on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub version: u32,
    pub id: i64,
    pub attempt: u32,
    pub task_dir: PathBuf,
    pub backend: String,
    pub environment_sha256: Option<String>,
    /// The environment artifact, pinned in the cache while the task runs.
    #[serde(default)]
    pub environment: Option<i64>,
    /// The shim, once started.
    pub shim: Option<ProcessRef>,
    /// Highest log seq the coordinator acknowledged.
    pub acked_seq: u64,
    /// Artifacts already created for this attempt (output, log).
    pub artifacts: Vec<i64>,
    pub output_uploaded: bool,
    pub log_uploaded: bool,
    /// The result, once known and until the coordinator has it.
    pub result: Option<(kiln_shared::WorkResult, Map<String, Value>)>,
    /// A Debian task: what to collect once its tool is done.
    #[serde(default)]
    pub debian: Option<DebianTask>,
    /// Artifacts uploaded so far by role (`upload`, `build_log`, …).
    #[serde(default)]
    pub uploads: std::collections::BTreeMap<String, i64>,
}

/// The task a `host-tool` record runs, kept to collect its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebianTask {
    pub task: String,
    pub task_data: Map<String, Value>,
}

impl TaskRecord {
    pub fn new(id: i64, attempt: u32, task_dir: PathBuf, backend: &str, environment_sha256: Option<String>) -> Self {
        TaskRecord {
            version: RECORD_VERSION,
            id,
            attempt,
            task_dir,
            backend: backend.to_owned(),
            environment_sha256,
            environment: None,
            shim: None,
            acked_seq: 0,
            artifacts: Vec::new(),
            output_uploaded: false,
            log_uploaded: false,
            result: None,
            debian: None,
            uploads: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("journal");
        std::fs::create_dir_all(&dir)?;
        Ok(Journal { dir })
    }

    fn path(&self, id: i64, attempt: u32) -> PathBuf {
        self.dir.join(format!("{id}-{attempt}.json"))
    }

    /// Record `record`. Always atomic; durable across power loss once it
    /// holds uploads or a result (what a reboot must not lose), relaxed while
    /// it only tracks a running shim, which a reboot ends anyway.
    pub fn write(&self, record: &TaskRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let path = self.path(record.id, record.attempt);
        if record.result.is_some() || !record.artifacts.is_empty() {
            write_atomic(&path, &bytes)
        } else {
            write_atomic_relaxed(&path, &bytes)
        }
    }

    pub fn remove(&self, id: i64, attempt: u32) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id, attempt)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable ones are moved into `corrupt/`.
    pub fn load_all(&self) -> std::io::Result<Vec<TaskRecord>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<TaskRecord>(&b).map_err(|e| e.to_string()))
                .and_then(|r| {
                    if r.version == RECORD_VERSION {
                        Ok(r)
                    } else {
                        Err(format!("unknown record version {}", r.version))
                    }
                });
            match parsed {
                Ok(record) => records.push(record),
                Err(why) => self.move_aside(&path, &why),
            }
        }
        records.sort_by_key(|r| (r.id, r.attempt));
        Ok(records)
    }

    fn move_aside(&self, path: &Path, why: &str) {
        let aside = self.dir.join("corrupt");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dest = aside.join(format!("{name}.{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")));
        let moved = std::fs::create_dir_all(&aside).and_then(|()| std::fs::rename(path, &dest));
        match moved {
            Ok(()) => tracing::error!(record = %path.display(), moved_to = %dest.display(), reason = why,
                "unreadable journal record moved aside; its task is not resumed"),
            Err(e) => tracing::error!(record = %path.display(), reason = why, error = %e,
                "unreadable journal record could not be moved aside; ignoring it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_moved_aside() {
        let dir = tempfile::tempdir().expect("tmp");
        let journal = Journal::open(dir.path()).expect("open");
        let mut r = TaskRecord::new(7, 2, dir.path().join("tasks/7-2"), "unshare", Some("ab".into()));
        r.acked_seq = 41;
        journal.write(&r).expect("write");
        std::fs::write(dir.path().join("journal/9-1.json"), b"{ truncated").expect("corrupt");
        std::fs::write(dir.path().join("journal/10-1.json"), br#"{"version": 99}"#).expect("future");
        let loaded = journal.load_all().expect("load");
        assert_eq!(loaded, vec![r]);
        let aside: Vec<_> = std::fs::read_dir(dir.path().join("journal/corrupt")).expect("aside").collect();
        assert_eq!(aside.len(), 2, "both bad records moved aside");
        journal.remove(7, 2).expect("remove");
        journal.remove(7, 2).expect("removing twice is fine");
        assert!(journal.load_all().expect("load").is_empty());
    }
}
