//! The sandbox init's SIGTERM handling: a flag set by the handler, read by
//! the reap loop, which forwards the request to every process inside.
#![allow(unsafe_code)]

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Install the handler (no SA_RESTART: the reap loop's waitpid must return
/// EINTR so the request is forwarded at once).
pub fn forward_termination() {
    let action = SigAction::new(SigHandler::Handler(on_terminate), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Restore default dispositions before exec'ing the task.
pub fn default_termination() {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: restoring the default disposition installs no code.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

pub fn termination_requested() -> bool {
    TERMINATE.swap(false, Ordering::SeqCst)
}

/// The shim's own stop request (SIGTERM from the daemon on an abort).
pub mod shim {
    use super::*;

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_stop(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }

    pub fn install() {
        let action = SigAction::new(SigHandler::Handler(on_stop), SaFlags::SA_RESTART, SigSet::empty());
        for sig in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            let _ = unsafe { sigaction(sig, &action) };
        }
        // A vanished terminal or parent is no reason to stop a task.
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: ignoring a signal installs no code.
        let _ = unsafe { sigaction(Signal::SIGHUP, &ignore) };
    }

    pub fn stop_requested() -> bool {
        STOP.load(Ordering::SeqCst)
    }
}
