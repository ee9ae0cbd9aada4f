//! What happened inside a task cgroup (OOM kills, peak memory) and the end
//! of its life: killing everything in it, then removing it.

use super::task::TaskDir;
use super::{fsutil, CgroupError, Controller, TaskCgroup, Version};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// `kill_all` gives up after this long: a process stuck in uninterruptible
/// sleep cannot be killed sooner, and the caller must hear about it.
const KILL_DEADLINE: Duration = Duration::from_secs(2);
const KILL_PAUSE: Duration = Duration::from_millis(10);

impl TaskCgroup {
    /// Did the kernel's OOM killer kill a process of this task?
    ///
    /// v2: `oom_kill` in `memory.events`. v1: `oom_kill` in
    /// `memory.oom_control` (Linux ≥ 4.13); on older kernels, which lack that
    /// line, `memory.failcnt > 0`, which only means "hit the limit": the
    /// caller should also check that the task died of SIGKILL.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dir_of(Controller::Memory) else { return false };
        let result = match dir.version {
            Version::V2 => fsutil::read_key(&dir.path.join("memory.events"), "oom_kill").map(|n| n.unwrap_or(0) > 0),
            Version::V1 => match fsutil::read_key(&dir.path.join("memory.oom_control"), "oom_kill") {
                Ok(Some(kills)) => Ok(kills > 0),
                Ok(None) => fsutil::read_u64(&dir.path.join("memory.failcnt")).map(|n| n > 0),
                Err(e) => Err(e),
            },
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(cgroup = %self.name(), error = %e, "failed to read OOM kills");
            false
        })
    }

    /// Highest memory use seen, in bytes: v1 `memory.max_usage_in_bytes`,
    /// v2 `memory.peak` (Linux ≥ 5.19); `None` when unknown.
    pub fn memory_peak(&self) -> Option<u64> {
        let dir = self.dir_of(Controller::Memory)?;
        let file = match dir.version {
            Version::V2 => "memory.peak",
            Version::V1 => "memory.max_usage_in_bytes",
        };
        fsutil::read_u64(&dir.path.join(file)).ok()
    }

    /// Kills every process in the task cgroup and waits (briefly) until it
    /// is empty. v2 uses `cgroup.kill`, which also catches processes forking
    /// meanwhile; otherwise every listed pid gets SIGKILL, again and again
    /// until none is left. Never signals the calling process itself.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        for dir in self.dirs().iter().filter(|d| d.version == Version::V2) {
            let kill_file = dir.path.join("cgroup.kill");
            if kill_file.exists() {
                if let Err(e) = fsutil::write(&kill_file, "1") {
                    tracing::warn!(error = %e, "cgroup.kill failed; signalling each process instead");
                }
            }
        }
        let start = Instant::now();
        let me = std::process::id() as i32;
        loop {
            let pids: Vec<i32> = self.read_pids()?.into_iter().filter(|p| *p != me).collect();
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= KILL_DEADLINE {
                return Err(CgroupError::StillPopulated {
                    path: self.first_path(),
                    remaining: pids,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            for pid in pids {
                // read_pids only yields pids > 0, so this never means "our group" or "everyone".
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(source) => return Err(CgroupError::Kill { pid, path: self.first_path(), source }),
                }
            }
            std::thread::sleep(KILL_PAUSE);
        }
    }

    /// Kills what is left and removes every directory of the task cgroup.
    /// When killing fails the directories are still tried, and both errors
    /// are reported.
    pub fn remove(self) -> Result<(), CgroupError> {
        let killed = self.kill_all();
        let paths: Vec<_> = self.dirs().iter().map(|d: &TaskDir| d.path.clone()).collect();
        let removed = fsutil::rmdir_all(&paths);
        match killed {
            Ok(()) => removed,
            Err(e) => Err(CgroupError::with_cleanup(e, removed)),
        }
    }

    fn first_path(&self) -> std::path::PathBuf {
        self.dirs().first().map(|d| d.path.clone()).unwrap_or_default()
    }
}
