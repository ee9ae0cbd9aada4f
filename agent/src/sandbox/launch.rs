//! Create the sandbox's process: fork a child that unshares the namespaces,
//! map its ids from the parent (only a process outside the new user
//! namespace may map a range), let it fork the container's pid 1, and hand
//! back both pids. Runs in the synchronous shim, before it starts any thread.
#![allow(unsafe_code)]

use super::container;
use super::spec::Plan;
use super::SandboxError;
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, fork, pipe2, read, setgroups, setresgid, setresuid, write, ForkResult, Gid, Pid, Uid};
use std::os::fd::{AsRawFd, OwnedFd};

/// The two processes of a running sandbox.
#[derive(Debug, Clone, Copy)]
pub struct Launched {
    /// Outside the new pid namespace; exits with the task's status.
    pub middle: Pid,
    /// pid 1 inside the sandbox: killing it ends every process in there.
    pub init: Pid,
}

/// Where the sandbox writes.
#[derive(Debug)]
pub struct SandboxIo {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Receives a message when setup or exec fails; stays empty otherwise.
    pub setup_error: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::sys("create a pipe"))
}

/// Fork the sandbox. `place` puts the child into the task's cgroup before
/// it creates its namespaces.
pub fn launch(
    plan: &Plan,
    io: SandboxIo,
    place: impl FnOnce(Pid) -> Result<(), SandboxError>,
) -> Result<Launched, SandboxError> {
    let (go_r, go_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    // SAFETY: the shim is single-threaded when it launches (its reader
    // threads start afterwards), so the child may run arbitrary code.
    match unsafe { fork() }.map_err(SandboxError::sys("fork the sandbox"))? {
        ForkResult::Child => {
            drop((go_w, ready_r, pid_r));
            std::process::exit(middle(plan, io, go_r, ready_w, pid_w).unwrap_or(125))
        }
        ForkResult::Parent { child } => {
            drop((go_r, ready_w, pid_w));
            drop(io);
            let fail = |e: SandboxError| {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                e
            };
            place(child).map_err(fail)?;
            write(&go_w, b"c").map_err(|e| fail(SandboxError::sys("start the sandbox")(e)))?;
            let mut byte = [0u8; 1];
            if read(ready_r.as_raw_fd(), &mut byte).map_err(|e| fail(SandboxError::sys("wait for the sandbox")(e)))?
                != 1
            {
                // The child failed to unshare; it said why on the setup pipe.
                let _ = waitpid(child, None);
                return Err(SandboxError::Setup {
                    what: "create the namespaces".into(),
                    message: "see the setup error".into(),
                });
            }
            write_id_maps(child, plan).map_err(fail)?;
            write(&go_w, b"m").map_err(|e| fail(SandboxError::sys("resume the sandbox")(e)))?;
            let mut buf = [0u8; 4];
            let n =
                read(pid_r.as_raw_fd(), &mut buf).map_err(|e| fail(SandboxError::sys("read the sandbox pid")(e)))?;
            if n != 4 {
                let status = waitpid(child, None).ok();
                return Err(SandboxError::Setup {
                    what: "start the sandbox's init".into(),
                    message: format!("the sandbox exited early ({status:?})"),
                });
            }
            Ok(Launched { middle: child, init: Pid::from_raw(i32::from_ne_bytes(buf)) })
        }
    }
}

fn write_id_maps(child: Pid, plan: &Plan) -> Result<(), SandboxError> {
    let (inside, outside, size) = plan.uid_map;
    let line = format!("{inside} {outside} {size}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{child}/{file}");
        std::fs::write(&path, &line).map_err(SandboxError::io(format!("write {path}")))?;
    }
    Ok(())
}

/// Report a setup failure where the shim reads it.
pub(super) fn report(fd: &OwnedFd, message: &str) {
    let _ = write(fd, message.as_bytes());
}

/// The middle process: namespaces, then fork pid 1 and wait for it.
fn middle(plan: &Plan, io: SandboxIo, go: OwnedFd, ready: OwnedFd, pid_out: OwnedFd) -> Result<i32, ()> {
    let SandboxIo { stdout, stderr, setup_error } = io;
    let fail = |what: &str, e: nix::Error| {
        report(&setup_error, &format!("failed to {what}: {e}"));
    };
    let devnull = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
        .map_err(|e| fail("open /dev/null", e))?;
    for (from, to) in [(devnull, 0), (stdout.as_raw_fd(), 1), (stderr.as_raw_fd(), 2)] {
        dup2(from, to).map_err(|e| fail("set up the task's standard streams", e))?;
    }
    drop((stdout, stderr));
    let mut byte = [0u8; 1];
    read(go.as_raw_fd(), &mut byte).map_err(|e| fail("wait to be placed in the cgroup", e))?;
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if plan.new_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| fail("create the sandbox namespaces", e))?;
    write(&ready, b"u").map_err(|e| fail("signal the shim", e))?;
    read(go.as_raw_fd(), &mut byte).map_err(|e| fail("wait for the id maps", e))?;
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(|e| fail("become gid 0", e))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(|e| fail("become uid 0", e))?;
    setgroups(&[]).map_err(|e| fail("drop supplementary groups", e))?;
    // SAFETY: this process is single-threaded (a fork of the single-threaded shim).
    match unsafe { fork() }.map_err(|e| fail("fork the sandbox init", e))? {
        ForkResult::Child => container::run(plan, setup_error),
        ForkResult::Parent { child } => {
            drop(setup_error);
            write(&pid_out, &child.as_raw().to_ne_bytes()).map_err(|_| ())?;
            drop(pid_out);
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                    Ok(_) | Err(nix::Error::EINTR) => continue,
                    Err(_) => return Ok(125),
                }
            }
        }
    }
}
