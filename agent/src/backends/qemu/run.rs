//! The shim's side of a qemu task: a qcow2 overlay on the base disk, one
//! listening socket per virtio-serial port, QEMU started tied to the shim,
//! output pumped into the log as it comes, the timeout and stop requests
//! enforced (SIGTERM, a grace period, SIGKILL), then the exit status and
//! the output files read back. A KVM failure (nested KVM can start a guest
//! and then die with "KVM internal error") ends the boot at once.

use super::cmdline::{self, PORTS};
use super::output::unpack_output;
use super::{child, QemuTask};
use crate::backends::spec::TaskSpec;
use crate::backends::{BackendError, RunOutcome};
use crate::supervisor::logfile::{pump, LogWriter};
use crate::supervisor::shim::STOP_GRACE;
use crate::supervisor::task_dir::{Outcome, TaskDir};
use kiln_shared::work::LogStream;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The task's copy-on-write disk, in its directory.
pub const OVERLAY: &str = "disk.qcow2";
const TASK_FILE: &str = "guest-task.sh";
const POLL: Duration = Duration::from_millis(20);
/// Signs in QEMU's stderr that the accelerator failed under the guest.
const ACCEL_FAILURES: [&str; 3] = ["KVM internal error", "emulation failure", "failed to initialize kvm"];

/// How one boot ended.
#[derive(Debug)]
pub struct Boot {
    pub outcome: RunOutcome,
    /// The accelerator failed (only meaningful for a KVM probe boot).
    pub accel_failed: bool,
}

/// Run the task `dir` describes (in the shim).
pub fn run(dir: &TaskDir, log: &LogWriter) -> Result<RunOutcome, BackendError> {
    crate::sandbox::signals_for_shim::install();
    let spec = TaskSpec::require(dir)?;
    let q = spec.qemu.clone().ok_or_else(|| BackendError::Spec("task.json has no qemu section".into()))?;
    if let Some(notice) = &spec.notice {
        log.kiln(notice);
    }
    if let Some(why) = &q.accel_reason {
        log.kiln(&format!("booting with {} ({why})", q.accel.to_uppercase()));
    }
    let boot = boot(&spec, &q, &dir.path, log, &|| crate::sandbox::signals_for_shim::stop_requested());
    let _ = std::fs::remove_file(dir.path.join(OVERLAY));
    let boot = boot?;
    if boot.outcome.outcome != Outcome::SetupFailed {
        let tar = dir.path.join("output.tar");
        if let Err(e) = unpack_output(&tar, &dir.output()) {
            log.kiln(&format!("warning: could not read the task's output files: {e}"));
        }
        let _ = std::fs::remove_file(tar);
    }
    Ok(boot.outcome)
}

fn listen(dir: &Path) -> Result<Vec<UnixListener>, BackendError> {
    PORTS
        .iter()
        .map(|(_, socket)| {
            let path = dir.join(socket);
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(BackendError::io(format!("listen on {}", path.display())))?;
            l.set_nonblocking(true).map_err(BackendError::io("make a socket non-blocking"))?;
            Ok(l)
        })
        .collect()
}

/// Where each port's bytes go once QEMU connects.
fn consume(
    index: usize,
    stream: UnixStream,
    dir: &Path,
    log: &LogWriter,
    status: &Arc<Mutex<String>>,
) -> JoinHandle<()> {
    let _ = stream.set_nonblocking(false);
    let (log, status, dir) = (log.clone(), status.clone(), dir.to_owned());
    std::thread::spawn(move || match index {
        0 => pump(stream, LogStream::Stdout, &log),
        1 => pump(stream, LogStream::Stderr, &log),
        2 => {
            let mut text = String::new();
            let _ = stream.take(4096).read_to_string(&mut text);
            *status.lock().unwrap_or_else(|p| p.into_inner()) = text;
        }
        _ => {
            if let Ok(mut file) = std::fs::File::create(dir.join("output.tar")) {
                let mut stream = stream;
                let _ = std::io::copy(&mut stream, &mut file);
            }
        }
    })
}

/// Boot the task's VM and supervise it until it ends.
pub fn boot(
    spec: &TaskSpec,
    q: &QemuTask,
    dir: &Path,
    log: &LogWriter,
    stop: &dyn Fn() -> bool,
) -> Result<Boot, BackendError> {
    let overlay = dir.join(OVERLAY);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&q.base)
        .arg(&overlay)
        .output()
        .map_err(BackendError::io("run qemu-img"))?;
    if !out.status.success() {
        return Err(BackendError::failed("create the task's disk", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let task_file = dir.join(TASK_FILE);
    std::fs::write(&task_file, cmdline::task_file(spec, q.tmp_size))
        .map_err(BackendError::io("write the guest's task"))?;
    let listeners = listen(dir)?;
    let mut cmd = Command::new(&q.binary);
    cmd.args(cmdline::args(spec, q, dir, &overlay, &task_file))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut qemu = child::spawn_tied(&mut cmd).map_err(BackendError::io(format!("start {}", q.binary)))?;
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let stderr_reader = qemu.stderr.take().map(|pipe| {
        let text = stderr_text.clone();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(pipe.take(1 << 20));
            let mut line = String::new();
            while matches!(std::io::BufRead::read_line(&mut reader, &mut line), Ok(n) if n > 0) {
                text.lock().unwrap_or_else(|p| p.into_inner()).push_str(&line);
                line.clear();
            }
        })
    });
    let status = Arc::new(Mutex::new(String::new()));
    let mut pending: Vec<Option<UnixListener>> = listeners.into_iter().map(Some).collect();
    let mut threads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_secs);
    let group = Pid::from_raw(i32::try_from(qemu.id()).unwrap_or(i32::MAX));
    let (mut outcome, mut stop_at, mut killed, mut accel_failed) = (Outcome::Exited, None::<Instant>, false, false);
    let exit = loop {
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(l) = slot {
                if let Ok((stream, _)) = l.accept() {
                    threads.push(consume(i, stream, dir, log, &status));
                    *slot = None;
                }
            }
        }
        match qemu.try_wait() {
            Ok(Some(exit)) => break Some(exit),
            Ok(None) => {}
            Err(_) => break None,
        }
        if !accel_failed
            && ACCEL_FAILURES.iter().any(|s| stderr_text.lock().unwrap_or_else(|p| p.into_inner()).contains(s))
        {
            accel_failed = true;
            let _ = killpg(group, Signal::SIGKILL);
            continue;
        }
        if stop_at.is_none() {
            let reason = if stop() {
                Some((Outcome::Aborted, "stopping the task: it was aborted".to_owned()))
            } else if Instant::now() >= deadline {
                Some((
                    Outcome::TimedOut,
                    format!("stopping the task: it exceeded its timeout of {} s", spec.timeout_secs),
                ))
            } else {
                None
            };
            if let Some((why, message)) = reason {
                log.kiln(&message);
                outcome = why;
                let _ = killpg(group, Signal::SIGTERM);
                stop_at = Some(Instant::now() + STOP_GRACE);
            }
        }
        if stop_at.is_some_and(|at| !killed && Instant::now() >= at) {
            log.kiln("the virtual machine did not stop within the grace period: killing it");
            let _ = killpg(group, Signal::SIGKILL);
            killed = true;
        }
        std::thread::sleep(POLL);
    };
    for t in threads {
        let _ = t.join();
    }
    if let Some(t) = stderr_reader {
        let _ = t.join();
    }
    for (_, socket) in PORTS {
        let _ = std::fs::remove_file(dir.join(socket));
    }
    let status = status.lock().unwrap_or_else(|p| p.into_inner()).trim().to_owned();
    let stderr = stderr_text.lock().unwrap_or_else(|p| p.into_inner()).trim().to_owned();
    Ok(Boot { outcome: conclude(outcome, &status, &stderr, exit, dir, accel_failed), accel_failed })
}

/// Turn what the guest and QEMU said into the task's outcome.
fn conclude(
    outcome: Outcome,
    status: &str,
    stderr: &str,
    exit: Option<std::process::ExitStatus>,
    dir: &Path,
    accel_failed: bool,
) -> RunOutcome {
    if let Some(code) = status.strip_prefix("exit ").and_then(|c| c.trim().parse().ok()) {
        return RunOutcome::exited(outcome, Some(code));
    }
    if outcome != Outcome::Exited {
        return RunOutcome::exited(outcome, None);
    }
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let tail: Vec<&str> = console.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
    let why = if accel_failed {
        format!("the accelerator failed under the guest: {}", stderr.lines().next().unwrap_or("KVM internal error"))
    } else if let Some(setup) = status.strip_prefix("setup: ") {
        format!("the guest could not start the task: {setup}")
    } else {
        format!(
            "the virtual machine ended ({exit:?}) without a status; qemu said: {stderr:?}; console: {:?}",
            tail.join(" | ")
        )
    };
    RunOutcome {
        outcome: Outcome::SetupFailed,
        exit_code: None,
        setup_error: Some(why),
        oom_killed: false,
        memory_peak: None,
    }
}

/// The emulator runs: a TCG boot of a 64 KiB firmware that writes to the
/// isa-debug-exit port (x86), or `-version` elsewhere.
/// Whether the emulator probe boots a tiny firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeBoot {
    Run,
    Skip,
}

pub fn probe_emulator(boot: ProbeBoot) -> Result<Vec<(String, Value)>, String> {
    let binary = super::host_binary();
    let missing =
        |what: &str, e: std::io::Error| format!("{what} cannot run ({e}): install qemu-system and qemu-utils");
    Command::new("qemu-img").arg("--version").output().map_err(|e| missing("qemu-img", e))?;
    if binary != "qemu-system-x86_64" || boot == ProbeBoot::Skip {
        let out = Command::new(binary).arg("-version").output().map_err(|e| missing(binary, e))?;
        return if out.status.success() { Ok(Vec::new()) } else { Err(format!("{binary} -version failed")) };
    }
    let work = tempfile::tempdir().map_err(|e| format!("failed to create a temporary directory: {e}"))?;
    let firmware = work.path().join("probe.bin");
    let mut bytes = vec![0xf4u8; 65536]; // hlt
                                         // At the reset vector: mov al, 1; out 0xf4, al; hlt
    bytes[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x01, 0xe6, 0xf4, 0xf4]);
    std::fs::write(&firmware, bytes).map_err(|e| format!("failed to write the probe firmware: {e}"))?;
    let out = Command::new(binary)
        .args(["-accel", "tcg", "-machine", "pc", "-nodefaults", "-no-user-config", "-display", "none", "-bios"])
        .arg(&firmware)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=1"])
        .output()
        .map_err(|e| missing(binary, e))?;
    // isa-debug-exit exits with (value << 1) | 1.
    if out.status.code() == Some(3) {
        return Ok(Vec::new());
    }
    Err(format!("a probe boot of {binary} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
}
