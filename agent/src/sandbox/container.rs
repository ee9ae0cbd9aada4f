//! Inside the sandbox, as pid 1 of its pid namespace and root of its user
//! namespace: mount what the spec lists under the new root, bind the device
//! nodes, pivot into the root and detach the host's, bring up lo, then fork
//! the task and reap until it exits. When pid 1 exits the kernel kills every
//! process left in the namespace, so nothing outlives the task.

use super::launch::report;
use super::spec::Plan;
use super::{net, SandboxError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, execvpe, fork, pivot_root, sethostname, setsid, ForkResult, Pid};
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Set up and run the task; never returns.
pub fn run(plan: &Plan, setup_error: OwnedFd) -> ! {
    if let Err(e) = setup(plan) {
        report(&setup_error, &e.to_string());
        std::process::exit(125);
    }
    super::signals::forward_termination();
    // SAFETY: single-threaded (a fork of the single-threaded shim).
    #[allow(unsafe_code)]
    let forked = unsafe { fork() };
    match forked {
        Ok(ForkResult::Child) => exec_task(plan, &setup_error),
        Ok(ForkResult::Parent { child }) => {
            drop(setup_error);
            std::process::exit(reap_until(child))
        }
        Err(e) => {
            report(&setup_error, &format!("failed to fork the task: {e}"));
            std::process::exit(125)
        }
    }
}

fn exec_task(plan: &Plan, setup_error: &OwnedFd) -> ! {
    let _ = setsid();
    super::signals::default_termination();
    if chdir(plan.cwd.as_path()).is_err() {
        let _ = chdir("/");
    }
    let to_c = |s: &String| CString::new(s.as_bytes()).ok();
    let args: Option<Vec<CString>> = plan.args.iter().map(to_c).collect();
    let env: Option<Vec<CString>> = plan.env.iter().map(to_c).collect();
    let (Some(args), Some(env)) = (args, env) else {
        report(setup_error, "exec: the command or environment contains a NUL byte");
        std::process::exit(127);
    };
    let err = match args.first() {
        Some(program) => execvpe(program, &args, &env).err(),
        None => None,
    };
    report(
        setup_error,
        &format!(
            "exec: cannot run {:?}: {}",
            plan.args.first().map_or("", |a| a.as_str()),
            err.map_or("no command".into(), |e| e.to_string())
        ),
    );
    std::process::exit(127)
}

/// Reap children until the task exits; return its status as an exit code.
fn reap_until(task: Pid) -> i32 {
    loop {
        if super::signals::termination_requested() {
            // Pass it on to everything in the namespace (pid 1 is spared).
            let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        }
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == task => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == task => return 128 + sig as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

/// `rootfs` joined with `dest`, refusing `..` and any symlink on the way so
/// a hostile image cannot redirect a mount onto the host's tree.
fn inside(rootfs: &Path, dest: &Path) -> Result<PathBuf, SandboxError> {
    let mut path = rootfs.to_path_buf();
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                path.push(name);
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(SandboxError::Spec(format!(
                        "{} is a symlink in the image: refusing to mount over it",
                        dest.display()
                    )));
                }
            }
            _ => {
                return Err(SandboxError::Spec(format!(
                    "mount destination {} is not a plain absolute path",
                    dest.display()
                )))
            }
        }
    }
    Ok(path)
}

fn split_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

fn mount_all(plan: &Plan) -> Result<(), SandboxError> {
    let root = &plan.rootfs;
    for m in &plan.mounts {
        let target = inside(root, m.destination())?;
        let (flags, data) = split_options(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().as_deref().unwrap_or("none");
        let what = format!("mount {} at {}", typ, m.destination().display());
        if flags.contains(MsFlags::MS_BIND) {
            let source = m.source().as_ref().ok_or_else(|| {
                SandboxError::Spec(format!("bind mount at {} has no source", m.destination().display()))
            })?;
            std::fs::create_dir_all(&target).map_err(SandboxError::io(format!("create {}", target.display())))?;
            mount(
                Some(source.as_path()),
                &target,
                None::<&str>,
                flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
                None::<&str>,
            )
            .map_err(SandboxError::sys(what.clone()))?;
            let restrict = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
            mount(None::<&str>, &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | restrict, None::<&str>)
                .map_err(SandboxError::sys(format!("restrict the bind mount at {}", m.destination().display())))?;
        } else {
            std::fs::create_dir_all(&target).map_err(SandboxError::io(format!("create {}", target.display())))?;
            let source =
                m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| typ.to_owned());
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(Some(source.as_str()), &target, Some(typ), flags, data).map_err(SandboxError::sys(what))?;
        }
    }
    Ok(())
}

fn bind_devices(plan: &Plan) -> Result<(), SandboxError> {
    let dev = inside(&plan.rootfs, Path::new("/dev"))?;
    for device in &plan.devices {
        let target = inside(&plan.rootfs, device)?;
        std::fs::File::create(&target).map_err(SandboxError::io(format!("create {}", target.display())))?;
        mount(Some(device.as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(SandboxError::sys(format!("bind {}", device.display())))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(to, dev.join(link));
    }
    Ok(())
}

fn setup(plan: &Plan) -> Result<(), SandboxError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(SandboxError::sys("make the sandbox's mounts private"))?;
    // A mount of this namespace's own, so pivot_root and the detach of the
    // old root work on mounts the user namespace owns.
    mount(Some(plan.rootfs.as_path()), &plan.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(SandboxError::sys("bind the root onto itself"))?;
    mount_all(plan)?;
    bind_devices(plan)?;
    sethostname(&plan.hostname).map_err(SandboxError::sys("set the host name"))?;
    if plan.new_network {
        net::loopback_up()?;
    }
    chdir(plan.rootfs.as_path()).map_err(SandboxError::sys("enter the new root"))?;
    pivot_root(".", ".").map_err(SandboxError::sys("pivot into the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(SandboxError::sys("detach the host's root"))?;
    chdir("/").map_err(SandboxError::sys("enter /"))?;
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::sys("set no_new_privs"))?;
    Ok(())
}
