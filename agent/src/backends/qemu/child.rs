//! Starting QEMU from the shim so that it never outlives it: in its own
//! process group, with the parent-death signal set to SIGKILL (a shim
//! killed with SIGKILL takes its VM with it).
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Spawn `cmd`; it is killed when the calling thread's process dies.
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only calls prctl
    // and getppid, both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: do not linger.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the shim is gone"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}
