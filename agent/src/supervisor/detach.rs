//! Detach the shim from the agent: fork once more, print the shim's pid for
//! the agent and let the intermediate process exit, so the shim is nobody's
//! child in the agent and outlives it. Runs first thing in the shim, while
//! it is single-threaded.
#![allow(unsafe_code)]

use nix::unistd::{fork, setsid, ForkResult};
use std::io::Write;

/// In the parent: print the child's pid and exit. In the child: return.
pub fn detach() -> Result<(), nix::Error> {
    // SAFETY: called at the start of the shim, before any thread exists.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{child}");
            let _ = out.flush();
            std::process::exit(0)
        }
        ForkResult::Child => {
            setsid()?;
            // Let go of the pipe the agent reads the pid from, or it would
            // wait for the whole task.
            let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_WRONLY, nix::sys::stat::Mode::empty())?;
            nix::unistd::dup2(null, 1)?;
            nix::unistd::close(null)?;
            Ok(())
        }
    }
}
