//! `workflow_runtime_status`: what a workflow is doing, summarised from its
//! own status and the state of everything below it (Debusine's rules, with
//! sub-workflows seen through their own descendants).

use kiln_shared::{TaskType, WorkStatus};
use std::fmt;

/// The runtime status a workflow reports, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuntimeStatus {
    /// A person must act: a wait task with `needs_input` is running.
    NeedsInput,
    /// Something executes: worker, server, internal work is running.
    Running,
    /// Only wait tasks that need nobody (delays) are running.
    Waiting,
    Pending,
    Blocked,
    Aborted,
    Completed,
}

impl RuntimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::NeedsInput => "needs_input",
            RuntimeStatus::Running => "running",
            RuntimeStatus::Waiting => "waiting",
            RuntimeStatus::Pending => "pending",
            RuntimeStatus::Blocked => "blocked",
            RuntimeStatus::Aborted => "aborted",
            RuntimeStatus::Completed => "completed",
        }
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group of descendants that share a kind and a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescendantGroup {
    pub task_type: TaskType,
    pub status: WorkStatus,
    /// `workflow_data.needs_input` (wait tasks).
    pub needs_input: bool,
}

/// The runtime status of a workflow whose own status is `own`, given the
/// (kind, status) groups found among all its descendants.
pub fn runtime_status(own: WorkStatus, descendants: &[DescendantGroup]) -> RuntimeStatus {
    match own {
        WorkStatus::Completed => return RuntimeStatus::Completed,
        WorkStatus::Aborted => return RuntimeStatus::Aborted,
        WorkStatus::Blocked => return RuntimeStatus::Blocked,
        WorkStatus::Pending => return RuntimeStatus::Pending,
        WorkStatus::Running => {}
    }
    // A running sub-workflow is represented by its own descendants.
    let counted =
        descendants.iter().filter(|d| !(d.task_type == TaskType::Workflow && d.status == WorkStatus::Running));
    let mut best: Option<RuntimeStatus> = None;
    for d in counted {
        let status = match (d.task_type, d.status) {
            (TaskType::Wait, WorkStatus::Running) if d.needs_input => RuntimeStatus::NeedsInput,
            (TaskType::Wait, WorkStatus::Running) => RuntimeStatus::Waiting,
            (_, WorkStatus::Running) => RuntimeStatus::Running,
            (_, WorkStatus::Pending) => RuntimeStatus::Pending,
            (_, WorkStatus::Blocked) => RuntimeStatus::Blocked,
            _ => continue,
        };
        best = Some(best.map_or(status, |b| b.min(status)));
    }
    // Nothing in progress below a running workflow: its orchestrator is at
    // work (populating) or it is about to finish.
    best.unwrap_or(RuntimeStatus::Running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskType::*;
    use WorkStatus::*;

    fn g(task_type: TaskType, status: WorkStatus, needs_input: bool) -> DescendantGroup {
        DescendantGroup { task_type, status, needs_input }
    }

    #[test]
    fn final_and_unstarted_workflows_report_their_own_status() {
        assert_eq!(runtime_status(Completed, &[g(Worker, Running, false)]), RuntimeStatus::Completed);
        assert_eq!(runtime_status(Aborted, &[]), RuntimeStatus::Aborted);
        assert_eq!(runtime_status(Blocked, &[]), RuntimeStatus::Blocked);
        assert_eq!(runtime_status(Pending, &[]), RuntimeStatus::Pending);
    }

    #[test]
    fn the_most_urgent_descendant_wins() {
        let all = [
            g(Worker, Blocked, false),
            g(Worker, Pending, false),
            g(Wait, Running, false),
            g(Server, Running, false),
            g(Wait, Running, true),
        ];
        for n in (1..=all.len()).rev() {
            let expected =
                [RuntimeStatus::Blocked, RuntimeStatus::Pending, RuntimeStatus::Waiting, RuntimeStatus::Running]
                    .get(n - 1)
                    .copied()
                    .unwrap_or(RuntimeStatus::NeedsInput);
            assert_eq!(runtime_status(Running, &all[..n]), expected, "with {n} groups");
        }
    }

    #[test]
    fn sub_workflows_count_through_their_descendants() {
        // A running sub-workflow says nothing by itself; a blocked one does.
        assert_eq!(runtime_status(Running, &[g(Workflow, Running, false)]), RuntimeStatus::Running);
        assert_eq!(
            runtime_status(Running, &[g(Workflow, Running, false), g(Worker, Pending, false)]),
            RuntimeStatus::Pending
        );
        assert_eq!(
            runtime_status(Running, &[g(Workflow, Blocked, false), g(Worker, Completed, false)]),
            RuntimeStatus::Blocked
        );
        assert_eq!(runtime_status(Running, &[g(Worker, Completed, false)]), RuntimeStatus::Running);
    }
}
