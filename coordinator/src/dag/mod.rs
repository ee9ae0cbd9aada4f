//! The DAG's rules as pure functions (DESIGN §3): when a dependency lets its
//! dependents go on, when it poisons them, and how a workflow ends. The store
//! applies these decisions inside its transactions.

pub mod runtime;

use kiln_shared::{WorkResult, WorkStatus};

/// What one dependency means for a blocked dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepState {
    /// Completed in a way that lets dependents run.
    Satisfied,
    /// Not finished yet.
    Waiting,
    /// Failed without `allow_failure`, or aborted: dependents are aborted.
    Poisoned,
}

/// Classify a dependency from its status, result and `allow_failure`.
pub fn dep_state(status: WorkStatus, result: Option<WorkResult>, allow_failure: bool) -> DepState {
    match (status, result) {
        // An aborted dependency poisons whatever allow_failure says
        // (Debusine leaves such dependents blocked forever).
        (WorkStatus::Aborted, _) => DepState::Poisoned,
        (WorkStatus::Completed, Some(r)) if r.lets_dependents_run() || allow_failure => DepState::Satisfied,
        (WorkStatus::Completed, _) => DepState::Poisoned,
        _ => DepState::Waiting,
    }
}

/// What a blocked request should become, given its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblock {
    StayBlocked,
    Pending,
    /// Abort because of this dependency.
    Abort {
        because_of: i64,
    },
}

/// `deps` pairs each dependency id with its state; `parent_running` is true
/// when the request has no parent workflow or the parent is running.
pub fn unblock(deps: &[(i64, DepState)], parent_running: bool) -> Unblock {
    if let Some((id, _)) = deps.iter().find(|(_, s)| *s == DepState::Poisoned) {
        return Unblock::Abort { because_of: *id };
    }
    if parent_running && deps.iter().all(|(_, s)| *s == DepState::Satisfied) {
        Unblock::Pending
    } else {
        Unblock::StayBlocked
    }
}

/// What a blocked dependent needs once one of its dependencies finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDependency {
    /// Abort it now: this dependency poisons it.
    Abort,
    /// Other dependencies are still open: nothing to do yet.
    Wait,
    /// That was the last open one: look at all of them once.
    Settle,
}

/// Decide from the finished dependency alone, so that a dependent with
/// thousands of dependencies is not re-read at each one's end.
pub fn after_dependency(finished: DepState, open_left: bool) -> AfterDependency {
    match finished {
        DepState::Poisoned => AfterDependency::Abort,
        _ if open_left => AfterDependency::Wait,
        _ => AfterDependency::Settle,
    }
}

/// The delay before automatic retry number `retry` (1 for the first) from
/// `workflow_data.retry_delays` (seconds); the last delay repeats.
pub fn retry_delay(delays: &[u64], retry: u32) -> Option<u64> {
    let index = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
    delays.get(index).or(delays.last()).copied()
}

/// A child's base priority: its workflow's effective priority plus its own
/// relative one.
pub fn child_priority(parent_effective: i64, relative: i64) -> i64 {
    parent_effective.saturating_add(relative)
}

/// A workflow child's state as the workflow's outcome sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChildState {
    pub status: WorkStatus,
    pub result: Option<WorkResult>,
    pub allow_failure: bool,
}

/// How a populated workflow ends once no child is in progress (an empty one
/// succeeds at once); `None` while any is.
pub fn workflow_outcome(children: &[ChildState]) -> Option<(WorkStatus, Option<WorkResult>)> {
    if children.iter().any(|c| !c.status.is_final()) {
        return None;
    }
    if children.iter().any(|c| c.status == WorkStatus::Aborted) {
        return Some((WorkStatus::Aborted, None));
    }
    let failed =
        children.iter().any(|c| matches!(c.result, Some(WorkResult::Failure | WorkResult::Error)) && !c.allow_failure);
    Some((WorkStatus::Completed, Some(if failed { WorkResult::Failure } else { WorkResult::Success })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkResult::*;
    use WorkStatus::*;

    #[test]
    fn dependency_states() {
        assert_eq!(dep_state(Completed, Some(Success), false), DepState::Satisfied);
        assert_eq!(dep_state(Completed, Some(Skipped), false), DepState::Satisfied);
        assert_eq!(dep_state(Completed, Some(Failure), false), DepState::Poisoned);
        assert_eq!(dep_state(Completed, Some(Error), true), DepState::Satisfied);
        assert_eq!(dep_state(Aborted, None, true), DepState::Poisoned, "abort poisons despite allow_failure");
        assert_eq!(dep_state(Running, None, false), DepState::Waiting);
        assert_eq!(dep_state(Blocked, None, false), DepState::Waiting);
    }

    #[test]
    fn unblocking() {
        use DepState::*;
        assert_eq!(unblock(&[], true), Unblock::Pending);
        assert_eq!(unblock(&[], false), Unblock::StayBlocked, "parent not running");
        assert_eq!(unblock(&[(1, Satisfied), (2, Waiting)], true), Unblock::StayBlocked);
        assert_eq!(unblock(&[(1, Waiting), (2, Poisoned)], true), Unblock::Abort { because_of: 2 });
        assert_eq!(unblock(&[(1, Satisfied), (2, Satisfied)], true), Unblock::Pending);
    }

    #[test]
    fn a_finished_dependency_decides_alone_until_the_last_one() {
        use DepState::*;
        assert_eq!(after_dependency(Poisoned, true), AfterDependency::Abort);
        assert_eq!(after_dependency(Satisfied, true), AfterDependency::Wait);
        assert_eq!(after_dependency(Satisfied, false), AfterDependency::Settle);
    }

    #[test]
    fn retry_delays_repeat_the_last_one() {
        assert_eq!(retry_delay(&[], 1), None);
        assert_eq!(retry_delay(&[10, 60], 1), Some(10));
        assert_eq!(retry_delay(&[10, 60], 2), Some(60));
        assert_eq!(retry_delay(&[10, 60], 7), Some(60));
        assert_eq!(child_priority(5, -2), 3);
        assert_eq!(child_priority(i64::MAX, 1), i64::MAX);
    }

    #[test]
    fn workflow_outcomes() {
        let c = |status, result, allow_failure| ChildState { status, result, allow_failure };
        assert_eq!(workflow_outcome(&[]), Some((Completed, Some(Success))), "empty: done at populate");
        assert_eq!(workflow_outcome(&[c(Completed, Some(Success), false), c(Running, None, false)]), None);
        assert_eq!(
            workflow_outcome(&[c(Completed, Some(Failure), true), c(Completed, Some(Success), false)]),
            Some((Completed, Some(Success)))
        );
        assert_eq!(workflow_outcome(&[c(Completed, Some(Error), false)]), Some((Completed, Some(Failure))));
        assert_eq!(
            workflow_outcome(&[c(Aborted, None, false), c(Completed, Some(Failure), false)]),
            Some((Aborted, None))
        );
    }
}
