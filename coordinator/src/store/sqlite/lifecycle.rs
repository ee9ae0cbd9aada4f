//! The propagation at the heart of the DAG, inside one transaction: what a
//! blocked request becomes, what a request that becomes pending does (the
//! coordinator completes synchronization points, starts workflows and wait
//! tasks itself), and how a finished request unblocks, aborts and finishes
//! what depends on it. The decisions come from the pure rules in
//! `crate::dag`; the transitions callers ask for are in `transitions`.

use super::{json_map, parse_enum};
use crate::dag::{self, AfterDependency, ChildState, DepState, Unblock};
use crate::store::{ts, Effects, PendingEntry, StoreError, StoreResult};
use chrono::Utc;
use kiln_shared::work::WorkRequestId;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};

/// The columns transitions decide on.
#[derive(Debug)]
pub(super) struct Core {
    pub id: WorkRequestId,
    pub task_type: TaskType,
    pub task_name: String,
    pub status: WorkStatus,
    pub result: Option<WorkResult>,
    pub parent: Option<WorkRequestId>,
    pub worker: Option<String>,
    pub attempt: u32,
    pub retries_left: u32,
    pub priority: i64,
    pub requirements: Option<String>,
    pub allow_failure: bool,
}

impl Core {
    pub(super) fn pending_entry(&self) -> StoreResult<Option<PendingEntry>> {
        self.requirements
            .as_deref()
            .map(|text| {
                let requirements = serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("requirements of {}: {e}", self.id)))?;
                Ok(PendingEntry { id: self.id, priority: self.priority, requirements })
            })
            .transpose()
    }
}

pub(super) fn core(conn: &Connection, id: WorkRequestId) -> StoreResult<Core> {
    let row = conn
        .query_row(
            "SELECT task_type, task_name, status, result, parent, worker, attempt, retries_left, \
             priority_base + priority_adjustment, requirements, workflow_data FROM work_requests WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get::<_, String>(10)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("work request {id}")))?;
    let (task_type, task_name, status, result, parent, worker, attempt, retries_left, priority, requirements, wd) = row;
    Ok(Core {
        id,
        task_type: parse_enum(&task_type)?,
        task_name,
        status: parse_enum(&status)?,
        result: result.map(|r| parse_enum(&r)).transpose()?,
        parent,
        worker,
        attempt,
        retries_left,
        priority,
        requirements,
        allow_failure: json_map(&wd)?.get("allow_failure") == Some(&Value::Bool(true)),
    })
}

/// Applies transitions and follows their consequences through the DAG.
pub(super) struct Propagator<'a, 'c> {
    pub tx: &'a Transaction<'c>,
    pub effects: Effects,
    /// Requests that reached a final state and whose dependents and parent
    /// still have to be looked at.
    finished: Vec<WorkRequestId>,
    pub now: String,
}

impl<'a, 'c> Propagator<'a, 'c> {
    pub fn new(tx: &'a Transaction<'c>) -> Self {
        Propagator { tx, effects: Effects::default(), finished: Vec::new(), now: ts(Utc::now()) }
    }

    /// Decide what a blocked request becomes now.
    pub fn settle(&mut self, id: WorkRequestId) -> StoreResult<()> {
        let c = core(self.tx, id)?;
        if !c.status.can_unblock() {
            return Ok(());
        }
        let mut stmt = self.tx.prepare_cached(
            "SELECT d.depends_on, w.status, w.result, w.workflow_data FROM dependencies d \
             JOIN work_requests w ON w.id = d.depends_on WHERE d.work_request = ?1 ORDER BY d.depends_on",
        )?;
        let raw = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let deps = raw
            .into_iter()
            .map(|(dep, status, result, wd)| {
                let allow = json_map(&wd)?.get("allow_failure") == Some(&Value::Bool(true));
                let result = result.map(|r| parse_enum(&r)).transpose()?;
                Ok((dep, dag::dep_state(parse_enum(&status)?, result, allow)))
            })
            .collect::<StoreResult<Vec<(i64, DepState)>>>()?;
        let parent_running = match c.parent {
            None => true,
            Some(p) => core(self.tx, p)?.status == WorkStatus::Running,
        };
        match dag::unblock(&deps, parent_running) {
            Unblock::StayBlocked => Ok(()),
            Unblock::Pending => self.make_pending(&c),
            Unblock::Abort { because_of } => self.abort(id, "dependency-failed", Some(because_of)),
        }
    }

    fn make_pending(&mut self, c: &Core) -> StoreResult<()> {
        match (c.task_type, c.task_name.as_str()) {
            // Completed by the scheduler the moment it becomes pending.
            (TaskType::Internal, "synchronization_point") => {
                self.finish(c.id, WorkStatus::Completed, Some(WorkResult::Success), &Map::new())
            }
            // A workflow runs as soon as it may; its orchestrator populates
            // it, and children added by hand while it waited may go on.
            (TaskType::Workflow, _) => {
                self.start(c.id)?;
                self.effects.coordinator.push(c.id);
                let children =
                    self.ids("SELECT id FROM work_requests WHERE parent = ?1 AND status = 'blocked'", c.id)?;
                children.into_iter().try_for_each(|child| self.settle(child))
            }
            // Waiting is running with no worker; a delay's timer or a person
            // completes it.
            (TaskType::Wait, _) => {
                self.start(c.id)?;
                self.effects.coordinator.push(c.id);
                Ok(())
            }
            _ => {
                self.tx.execute("UPDATE work_requests SET status = 'pending' WHERE id = ?1", [c.id])?;
                match c.pending_entry()? {
                    Some(entry) => self.effects.pending.push(entry),
                    // Callbacks and server tasks: the coordinator's runners.
                    None => self.effects.coordinator.push(c.id),
                }
                Ok(())
            }
        }
    }

    fn start(&mut self, id: WorkRequestId) -> StoreResult<()> {
        self.tx.execute(
            "UPDATE work_requests SET status = 'running', started_at = ?2 WHERE id = ?1",
            params![id, self.now],
        )?;
        Ok(())
    }

    /// Record a final state and queue its consequences.
    pub fn finish(
        &mut self,
        id: WorkRequestId,
        status: WorkStatus,
        result: Option<WorkResult>,
        output: &Map<String, Value>,
    ) -> StoreResult<()> {
        self.tx.execute(
            "UPDATE work_requests SET status = ?2, result = ?3, completed_at = ?4, output_data = ?5, \
             workflow_runtime_status = CASE WHEN task_type = 'workflow' THEN ?2 ELSE workflow_runtime_status END \
             WHERE id = ?1",
            params![
                id,
                status.as_str(),
                result.map(|r| r.as_str()),
                self.now,
                Value::Object(output.clone()).to_string()
            ],
        )?;
        self.finalised(id)
    }

    /// Its dependents' edges to it are done; its consequences are queued.
    fn finalised(&mut self, id: WorkRequestId) -> StoreResult<()> {
        self.tx.execute("UPDATE dependencies SET done = 1 WHERE depends_on = ?1", [id])?;
        self.finished.push(id);
        self.effects.finished.push(id);
        Ok(())
    }

    /// Abort a request that is not final yet (others are left alone).
    pub fn abort(&mut self, id: WorkRequestId, reason: &str, because_of: Option<WorkRequestId>) -> StoreResult<()> {
        let c = core(self.tx, id)?;
        if !c.status.can_abort() {
            return Ok(());
        }
        if c.status == WorkStatus::Pending {
            self.effects.unpending.push(id);
        }
        self.tx.execute(
            "UPDATE work_requests SET status = 'aborted', abort_reason = ?2, aborted_by = ?3, completed_at = ?4, \
             workflow_runtime_status = CASE WHEN task_type = 'workflow' THEN 'aborted' ELSE workflow_runtime_status END \
             WHERE id = ?1",
            params![id, reason, because_of, self.now],
        )?;
        if c.status == WorkStatus::Running {
            self.tx.execute(
                "UPDATE attempts SET completed_at = ?3, abort_reason = ?4 WHERE work_request = ?1 AND attempt = ?2",
                params![id, c.attempt, self.now, reason],
            )?;
        }
        self.finalised(id)
    }

    /// Follow every finished request to its dependents and its workflow.
    pub fn run(mut self) -> StoreResult<Effects> {
        while let Some(id) = self.finished.pop() {
            let c = core(self.tx, id)?;
            if c.task_type == TaskType::Workflow && c.status.is_final() {
                // Aborting a workflow aborts its descendants (this cascades);
                // a workflow ended by its orchestrator's error takes its
                // unfinished children with it.
                let reason = if c.status == WorkStatus::Aborted { "workflow-aborted" } else { "workflow-finished" };
                let open =
                    "SELECT id FROM work_requests WHERE parent = ?1 AND status IN ('blocked', 'pending', 'running')";
                for child in self.ids(open, id)? {
                    self.abort(child, reason, None)?;
                }
            }
            let state = dag::dep_state(c.status, c.result, c.allow_failure);
            for dependent in self.ids("SELECT work_request FROM dependencies WHERE depends_on = ?1", id)? {
                self.after_dependency(dependent, id, state)?;
            }
            if let Some(parent) = c.parent {
                self.check_workflow(parent)?;
            }
        }
        Ok(self.effects)
    }

    /// A dependency of `dependent` finished in `state`.
    fn after_dependency(&mut self, dependent: WorkRequestId, dep: WorkRequestId, state: DepState) -> StoreResult<()> {
        let status: String =
            self.tx.query_row("SELECT status FROM work_requests WHERE id = ?1", [dependent], |r| r.get(0))?;
        if !parse_enum::<WorkStatus>(&status)?.can_unblock() {
            return Ok(());
        }
        let open_left = self
            .tx
            .prepare_cached("SELECT 1 FROM dependencies WHERE work_request = ?1 AND done = 0 LIMIT 1")?
            .exists([dependent])?;
        match dag::after_dependency(state, open_left) {
            AfterDependency::Abort => self.abort(dependent, "dependency-failed", Some(dep)),
            AfterDependency::Wait => Ok(()),
            AfterDependency::Settle => self.settle(dependent),
        }
    }

    pub fn ids(&self, sql: &str, id: WorkRequestId) -> StoreResult<Vec<WorkRequestId>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let ids = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// A running, populated workflow ends once none of its children is in
    /// progress.
    pub fn check_workflow(&mut self, id: WorkRequestId) -> StoreResult<()> {
        let (status, populated): (String, bool) =
            self.tx.query_row("SELECT status, populated FROM work_requests WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if parse_enum::<WorkStatus>(&status)? != WorkStatus::Running || !populated {
            return Ok(());
        }
        let busy = self
            .tx
            .prepare_cached(
                "SELECT 1 FROM work_requests WHERE parent = ?1 AND status IN ('blocked', 'pending', 'running') LIMIT 1",
            )?
            .exists([id])?;
        if busy {
            return Ok(());
        }
        let mut stmt =
            self.tx.prepare_cached("SELECT status, result, workflow_data FROM work_requests WHERE parent = ?1")?;
        let raw = stmt
            .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let children = raw
            .into_iter()
            .map(|(status, result, wd)| {
                Ok(ChildState {
                    status: parse_enum(&status)?,
                    result: result.map(|r| parse_enum(&r)).transpose()?,
                    allow_failure: json_map(&wd)?.get("allow_failure") == Some(&Value::Bool(true)),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        match dag::workflow_outcome(&children) {
            None => Ok(()),
            Some((WorkStatus::Aborted, _)) => self.abort(id, "child-aborted", None),
            Some((status, result)) => self.finish(id, status, result, &Map::new()),
        }
    }
}
