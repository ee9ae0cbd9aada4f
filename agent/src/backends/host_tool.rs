//! `host-tool`: a trusted Debian tool (sbuild, mmdebstrap, autopkgtest,
//! lintian) run on the host by the task's shim, because these tools build
//! their own sandbox from the cached environment tarball (DESIGN §5). It is
//! not an executor users ask for: the Debian task modules describe it in
//! `task.json`, and the shim runs it like any backend, so the tool survives
//! agent restarts, its output streams into the task log, and a timeout or
//! abort stops it (SIGTERM to its process group, a grace period, then every
//! process of its cgroup killed).

use super::spec::TaskSpec;
use super::{AgentSide, Backend, BackendError, RunOutcome, TaskParams};
use crate::cgroup::{self, CgroupLimits, TaskCgroup};
use crate::supervisor::logfile::{pump, LogWriter};
use crate::supervisor::shim::STOP_GRACE;
use crate::supervisor::task_dir::{Outcome, TaskDir};
use kiln_shared::work::LogStream;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const HOST_TOOL: &str = "host-tool";
const POLL: Duration = Duration::from_millis(100);

/// The host side of a `host-tool` task in `task.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTask {
    /// The working directory (inside the task directory).
    pub cwd: PathBuf,
    /// The tool's `TMPDIR`, removed when the task ends. sbuild, mmdebstrap
    /// and autopkgtest unpack whole systems there and cannot clean up when
    /// they are killed (abort, timeout): without this an aborted build left
    /// its ~400 MB chroot in /tmp for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp: Option<PathBuf>,
}

/// Where the tool of the task in `task_dir` keeps its temporary files: in
/// the host's temporary directory (world-traversable, which the tools'
/// unprivileged user namespaces need) under a name unique to the task.
pub fn scratch_dir(task_dir: &Path) -> PathBuf {
    std::env::temp_dir().join(format!("kiln-tool-{}", crate::supervisor::shim::cgroup_name(task_dir)))
}

/// Create the scratch directory afresh: owned by the agent, others may only
/// traverse it (the tools' user namespaces map root to another uid).
pub fn create_scratch_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    remove_scratch_dir(path)?;
    std::fs::DirBuilder::new().mode(0o711).create(path)
}

fn remove_scratch_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub struct HostTool;

impl Backend for HostTool {
    fn name(&self) -> &'static str {
        HOST_TOOL
    }

    fn image_category(&self) -> &'static str {
        super::SYSTEM_TARBALL
    }

    fn store(&self) -> Option<&'static str> {
        None
    }

    fn probe(&self) -> Result<Vec<(String, Value)>, String> {
        Err("host-tool is not an executor: Debian tasks use it internally".into())
    }

    fn prepare(&self, _task: &TaskParams, _agent: &AgentSide, _dir: &TaskDir) -> Result<(), BackendError> {
        Err(BackendError::Spec("host-tool tasks are described by their Debian task module".into()))
    }

    fn run(&self, dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
        crate::sandbox::signals_for_shim::install();
        let spec = TaskSpec::require(dir)?;
        let host = spec.host.clone().ok_or_else(|| BackendError::Spec("task.json has no host section".into()))?;
        if let Some(notice) = &spec.notice {
            log.kiln(notice);
        }
        let layout = cgroup::detect(Path::new("/proc"), Path::new("/sys"));
        let layout = layout.restricted_to(&layout.enforceable());
        let limits = CgroupLimits { memory: (spec.memory > 0).then_some(spec.memory), pids: None, cpus: None };
        let name = crate::supervisor::shim::cgroup_name(&dir.path);
        // Without a cgroup the process group still reaches everything that
        // does not start a session of its own.
        let cg = TaskCgroup::create(&layout, &name, &limits)
            .or_else(|_| TaskCgroup::create(&layout, &name, &CgroupLimits::default()))
            .map_err(|e| {
                log.kiln(&format!("warning: no cgroup for the tool ({e}): stopping relies on its process group"))
            })
            .ok();
        let outcome = supervise(&spec, &host, log, cg.as_ref());
        if let Some(cg) = cg {
            let _ = cg.kill_all();
            if let Err(e) = cg.remove() {
                log.kiln(&format!("warning: failed to remove the tool's cgroup: {e}"));
            }
        }
        if let Some(tmp) = &host.tmp {
            if let Err(e) = remove_scratch_dir(tmp) {
                log.kiln(&format!("warning: failed to remove the tool's temporary files {}: {e}", tmp.display()));
            }
        }
        outcome
    }

    fn cleanup(&self, dir: &TaskDir) -> Vec<String> {
        let layout = cgroup::detect(Path::new("/proc"), Path::new("/sys"));
        let name = crate::supervisor::shim::cgroup_name(&dir.path);
        let mut problems = Vec::new();
        if let Ok(cg) = TaskCgroup::open(&layout, &name) {
            if let Err(e) = cg.kill_all() {
                problems.push(e.to_string());
            }
            if let Err(e) = cg.remove() {
                problems.push(e.to_string());
            }
        }
        let tmp = TaskSpec::load(dir).ok().flatten().and_then(|s| s.host).and_then(|h| h.tmp);
        if let Some(tmp) = tmp {
            if let Err(e) = remove_scratch_dir(&tmp) {
                problems.push(format!("failed to remove {}: {e}", tmp.display()));
            }
        }
        problems
    }
}

fn supervise(
    spec: &TaskSpec,
    host: &HostTask,
    log: &LogWriter,
    cg: Option<&TaskCgroup>,
) -> Result<RunOutcome, BackendError> {
    let Some((program, args)) = spec.args.split_first() else {
        return Err(BackendError::Spec("task.json has no command".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&host.cwd)
        .env_clear()
        .envs(spec.env.iter().filter_map(|kv| kv.split_once('=')))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    log.kiln(&format!("running {}", spec.args.join(" ")));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let mut outcome = RunOutcome::exited(Outcome::SetupFailed, None);
            outcome.setup_error = Some(format!("failed to run {program}: {e}"));
            return Ok(outcome);
        }
    };
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    if let Some(cg) = cg {
        if let Err(e) = cg.add_pid(pid) {
            log.kiln(&format!("warning: failed to put the tool in its cgroup: {e}"));
        }
    }
    let out = child.stdout.take().map(|s| {
        let log = log.clone();
        std::thread::spawn(move || pump(s, LogStream::Stdout, &log))
    });
    let err = child.stderr.take().map(|s| {
        let log = log.clone();
        std::thread::spawn(move || pump(s, LogStream::Stderr, &log))
    });
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_secs);
    let mut outcome = Outcome::Exited;
    let mut stop_at: Option<Instant> = None;
    let mut killed = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                log.kiln(&format!("failed to wait for the tool: {e}"));
                break None;
            }
        }
        if stop_at.is_none() {
            let why = if crate::sandbox::signals_for_shim::stop_requested() {
                Some((Outcome::Aborted, "stopping the tool: the task was aborted".to_owned()))
            } else if Instant::now() >= deadline {
                Some((
                    Outcome::TimedOut,
                    format!("stopping the tool: it exceeded its timeout of {} s", spec.timeout_secs),
                ))
            } else {
                None
            };
            if let Some((why, message)) = why {
                log.kiln(&message);
                outcome = why;
                let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                stop_at = Some(Instant::now() + STOP_GRACE);
            }
        }
        if let Some(at) = stop_at {
            if !killed && Instant::now() >= at {
                log.kiln("the tool did not stop within the grace period: killing it");
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                if let Some(cg) = cg {
                    let _ = cg.kill_all();
                }
                killed = true;
            }
        }
        std::thread::sleep(POLL);
    };
    // Whatever the tool left behind would hold the pipes open.
    if let Some(cg) = cg {
        let _ = cg.kill_all();
    }
    for pump in [out, err].into_iter().flatten() {
        let _ = pump.join();
    }
    let code = status.and_then(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().or_else(|| s.signal().map(|sig| 128 + sig))
    });
    Ok(RunOutcome::exited(outcome, code))
}
