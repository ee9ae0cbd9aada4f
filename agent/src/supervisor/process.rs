//! Identify a process by pid **and** start time, so a pid reused after a
//! reboot or a long outage is never mistaken for a task's shim.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot.
    pub start_time: u64,
}

/// `(state, start time)` of a process from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcessRef {
    /// The running process with this pid.
    pub fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|(_, start_time)| ProcessRef { pid, start_time })
    }

    /// Is this very process still alive (not a zombie, not a reused pid)?
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// Signal it, only if it is still the same process.
    pub fn signal(&self, sig: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_a_live_process_from_a_reused_pid() {
        let me = ProcessRef::of(std::process::id() as i32).expect("self");
        assert!(me.is_alive());
        let impostor = ProcessRef { start_time: me.start_time + 1, ..me };
        assert!(!impostor.is_alive(), "same pid, other start time");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let r = ProcessRef::of(child.id() as i32);
        let _ = child.wait();
        assert!(r.is_none_or(|r| !r.is_alive()), "a reaped child is gone");
    }
}
