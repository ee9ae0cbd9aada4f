//! Status enums and the transition guards of the work request lifecycle
//! (DESIGN §3). An illegal transition is an error, never a silent write.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
}

/// A string that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// Where a work request is in its life.
    WorkStatus {
        Blocked => "blocked",
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Aborted => "aborted",
    }
);

string_enum!(
    /// How a completed work request ended.
    WorkResult {
        Success => "success",
        Failure => "failure",
        Error => "error",
        Skipped => "skipped",
    }
);

string_enum!(
    /// The six task types (DESIGN §2).
    TaskType {
        Worker => "worker",
        Server => "server",
        Internal => "internal",
        Workflow => "workflow",
        Signing => "signing",
        Wait => "wait",
    }
);

string_enum!(
    /// What an agent is for.
    WorkerRole {
        Worker => "worker",
        Signing => "signing",
    }
);

impl WorkStatus {
    /// Finished: nothing more happens to it unless it is retried.
    pub fn is_final(self) -> bool {
        matches!(self, WorkStatus::Completed | WorkStatus::Aborted)
    }
    /// May a user or a cascade abort it?
    pub fn can_abort(self) -> bool {
        !self.is_final()
    }
    /// May it be handed to an agent?
    pub fn can_start(self) -> bool {
        self == WorkStatus::Pending
    }
    /// May a blocked request become pending?
    pub fn can_unblock(self) -> bool {
        self == WorkStatus::Blocked
    }
    /// May a completion be recorded? Only while running.
    pub fn can_complete(self) -> bool {
        self == WorkStatus::Running
    }
}

impl WorkResult {
    /// Does this result let dependents go on without `allow_failure`?
    pub fn lets_dependents_run(self) -> bool {
        matches!(self, WorkResult::Success | WorkResult::Skipped)
    }
    /// May a user retry a request that completed with this result?
    pub fn can_retry(self) -> bool {
        matches!(self, WorkResult::Failure | WorkResult::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings_and_json() {
        for s in WorkStatus::ALL {
            assert_eq!(s.as_str().parse::<WorkStatus>(), Ok(*s));
            let json = serde_json::to_string(s).expect("serialize");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("done".parse::<WorkStatus>().is_err());
        assert!("Worker".parse::<TaskType>().is_err());
    }

    #[test]
    fn guards_follow_the_lifecycle() {
        assert!(WorkStatus::Pending.can_start());
        assert!(!WorkStatus::Blocked.can_start());
        assert!(!WorkStatus::Completed.can_abort());
        assert!(!WorkStatus::Aborted.can_abort());
        assert!(WorkStatus::Running.can_complete());
        assert!(!WorkStatus::Pending.can_complete());
        assert!(WorkResult::Skipped.lets_dependents_run());
        assert!(!WorkResult::Error.lets_dependents_run());
        assert!(!WorkResult::Success.can_retry());
    }
}
