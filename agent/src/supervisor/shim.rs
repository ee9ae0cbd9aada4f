//! The shim: one small synchronous supervisor process per task, in its own
//! session, started by the agent daemon as `kiln-agent shim --task-dir DIR`.
//! It owns the sandbox: prepares the root, places the task in its cgroup,
//! launches it, copies its output into `log.jsonl`, enforces the timeout,
//! stops it on SIGTERM (an abort), cleans up, and writes `status.json`. It
//! never talks to the coordinator, so the daemon can restart underneath it.

use super::logfile::{pump, LogWriter};
use super::task_dir::{write_atomic, Outcome, ShimStatus, TaskDir, STATUS_VERSION};
use crate::cgroup::{self, CgroupLimits, Controller, TaskCgroup};
use crate::sandbox::launch::{launch, Launched, SandboxIo};
use crate::sandbox::spec::{self, Plan};
use crate::sandbox::{rootfs, SandboxError};
use chrono::Utc;
use kiln_shared::work::LogStream;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::pipe2;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL when stopping a task.
pub const STOP_GRACE: Duration = Duration::from_millis(2500);
const POLL: Duration = Duration::from_millis(50);

/// `kiln-agent shim`: detach from the agent (printing the shim's pid), then
/// supervise the task.
pub fn main(task_dir: &Path) -> i32 {
    if let Err(e) = super::detach::detach() {
        eprintln!("kiln-agent shim: failed to detach: {e}");
        return 1;
    }
    supervise_here(task_dir)
}

/// Supervise the task in this process; its exit code.
pub fn supervise_here(task_dir: &Path) -> i32 {
    // Its own session: the daemon's restart or its terminal going away must
    // not reach the task.
    let _ = nix::unistd::setsid();
    let dir = TaskDir::new(task_dir);
    let started_at = Utc::now();
    let log = match LogWriter::create(&dir.log()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("kiln-agent shim: failed to create {}: {e}", dir.log().display());
            return 1;
        }
    };
    // The task's backend runs it: unshare's sandbox (`supervise` below),
    // an Incus container or a QEMU machine (`crate::backends`).
    let ran = crate::backends::of_task(&dir).and_then(|backend| backend.run(&dir, &log));
    let mut status = match ran {
        Ok(r) => ShimStatus {
            version: STATUS_VERSION,
            outcome: r.outcome,
            exit_code: r.exit_code,
            oom_killed: r.oom_killed,
            setup_error: r.setup_error,
            memory_peak: r.memory_peak,
            started_at,
            finished_at: Utc::now(),
        },
        Err(e) => {
            log.kiln(&format!("sandbox setup failed: {e}"));
            ShimStatus {
                version: STATUS_VERSION,
                outcome: Outcome::SetupFailed,
                exit_code: None,
                oom_killed: false,
                setup_error: Some(e.to_string()),
                memory_peak: None,
                started_at,
                finished_at: Utc::now(),
            }
        }
    };
    status.started_at = started_at;
    log.sync();
    match serde_json::to_vec_pretty(&status)
        .map_err(std::io::Error::other)
        .and_then(|b| write_atomic(&dir.status(), &b))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln-agent shim: failed to write {}: {e}", dir.status().display());
            1
        }
    }
}

/// A cgroup name unique on this host (several agents may share it) and
/// stable for one task directory, so a restarted agent finds it again.
pub fn cgroup_name(task_dir: &Path) -> String {
    use sha2::Digest;
    let base = task_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "task".into());
    let digest = sha2::Sha256::digest(task_dir.as_os_str().as_encoded_bytes());
    format!("{base}-{}", &hex::encode(digest)[..12])
}

fn limits(plan: &Plan) -> CgroupLimits {
    CgroupLimits { memory: plan.memory, pids: plan.pids, cpus: plan.cpus }
}

/// Run an unshare task (its OCI spec in `dir`) in this process.
pub(crate) fn run_sandbox(dir: &TaskDir, log: &LogWriter) -> Result<crate::backends::RunOutcome, SandboxError> {
    let s = supervise(dir, log)?;
    Ok(crate::backends::RunOutcome {
        outcome: s.outcome,
        exit_code: s.exit_code,
        setup_error: s.setup_error,
        oom_killed: s.oom_killed,
        memory_peak: s.memory_peak,
    })
}

fn supervise(dir: &TaskDir, log: &LogWriter) -> Result<ShimStatus, SandboxError> {
    let spec = oci_spec::runtime::Spec::load(dir.spec())
        .map_err(|e| SandboxError::Spec(format!("failed to read {}: {e}", dir.spec().display())))?;
    let plan = spec::plan(&spec)?;
    if let Some(notice) = &plan.notice {
        log.kiln(notice);
    }
    rootfs::enter_private_mount_namespace()?;
    let name = cgroup_name(&dir.path);
    // Only controllers that really work here: a present but unusable one
    // must not fail every task (the fingerprint reports which are enforced).
    let detected = cgroup::detect(Path::new("/proc"), Path::new("/sys"));
    let layout = match &plan.controllers {
        // What the agent established when it probed the host.
        Some(names) => {
            let keep: Vec<Controller> =
                Controller::ALL.iter().copied().filter(|c| names.iter().any(|n| n == c.name())).collect();
            detected.only(&keep)
        }
        None => detected.restricted_to(&detected.enforceable()),
    };
    let cgroup = TaskCgroup::create(&layout, &name, &limits(&plan))
        .map_err(|e| SandboxError::Setup { what: "create the task's cgroup".into(), message: e.to_string() })?;
    let result = rootfs::prepare(&plan, &dir.path, &dir.output()).and_then(|()| run(&plan, &cgroup, log));
    let oom_killed = cgroup.oom_killed();
    let memory_peak = cgroup.memory_peak();
    if let Err(e) = cgroup.remove() {
        log.kiln(&format!("warning: failed to remove the task's cgroup: {e}"));
    }
    for problem in rootfs::cleanup(&plan, &dir.path) {
        log.kiln(&format!("warning: cleanup: {problem}"));
    }
    let (outcome, exit_code, setup_error) = result?;
    if oom_killed {
        log.kiln(&format!(
            "the task was killed for exceeding its memory limit of {} bytes",
            plan.memory.unwrap_or_default()
        ));
    }
    Ok(ShimStatus {
        version: STATUS_VERSION,
        outcome,
        exit_code,
        oom_killed,
        setup_error,
        memory_peak,
        started_at: Utc::now(),
        finished_at: Utc::now(),
    })
}

type RunResult = (Outcome, Option<i32>, Option<String>);

fn run(plan: &Plan, cgroup: &TaskCgroup, log: &LogWriter) -> Result<RunResult, SandboxError> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::sys("create the stdout pipe"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::sys("create the stderr pipe"))?;
    let (setup_r, setup_w) = pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::sys("create the setup pipe"))?;
    let io = SandboxIo { stdout: out_w, stderr: err_w, setup_error: setup_w };
    let launched = launch(plan, io, |pid| {
        cgroup
            .add_pid(pid.as_raw())
            .map_err(|e| SandboxError::Setup { what: "place the task in its cgroup".into(), message: e.to_string() })
    })?;
    // Threads only from here on: every fork is behind us.
    crate::sandbox::signals_for_shim::install();
    let out = spawn_pump(out_r, LogStream::Stdout, log);
    let err = spawn_pump(err_r, LogStream::Stderr, log);
    let setup = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(setup_r).read_to_string(&mut text);
        text
    });
    let (outcome, code) = wait(plan, launched, cgroup, log);
    let _ = out.join();
    let _ = err.join();
    let setup_text = setup.join().unwrap_or_default();
    if let Some(exec_error) = setup_text.strip_prefix("exec: ") {
        log.line(LogStream::Stderr, &format!("kiln: {exec_error}"));
        return Ok((outcome, code, None));
    }
    if !setup_text.is_empty() {
        return Ok((Outcome::SetupFailed, code, Some(setup_text)));
    }
    Ok((outcome, code, None))
}

fn spawn_pump(fd: std::os::fd::OwnedFd, stream: LogStream, log: &LogWriter) -> std::thread::JoinHandle<()> {
    let log = log.clone();
    std::thread::spawn(move || pump(std::fs::File::from(fd), stream, &log))
}

/// Wait for the task, enforcing the timeout and honouring a stop request.
fn wait(plan: &Plan, launched: Launched, cgroup: &TaskCgroup, log: &LogWriter) -> (Outcome, Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(plan.timeout_secs);
    let mut outcome = Outcome::Exited;
    let mut stop_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        match waitpid(launched.middle, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return (outcome, Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return (outcome, Some(128 + sig as i32)),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return (outcome, None),
        }
        if stop_at.is_none() {
            let reason = if crate::sandbox::signals_for_shim::stop_requested() {
                Some((Outcome::Aborted, "stopping the task: it was aborted".to_owned()))
            } else if Instant::now() >= deadline {
                Some((
                    Outcome::TimedOut,
                    format!("stopping the task: it exceeded its timeout of {} s", plan.timeout_secs),
                ))
            } else {
                None
            };
            if let Some((why, message)) = reason {
                log.kiln(&message);
                outcome = why;
                let _ = kill(launched.init, Signal::SIGTERM);
                stop_at = Some(Instant::now() + STOP_GRACE);
            }
        }
        if let Some(at) = stop_at {
            if !killed && Instant::now() >= at {
                log.kiln("the task did not stop within the grace period: killing it");
                let _ = kill(launched.init, Signal::SIGKILL);
                if let Err(e) = cgroup.kill_all() {
                    log.kiln(&format!("warning: {e}"));
                }
                killed = true;
            }
        }
        std::thread::sleep(POLL);
    }
}
