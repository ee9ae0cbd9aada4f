//! State transitions of work requests inside one transaction: assignment,
//! completion with attempt fencing and automatic retry, abort with cascade,
//! manual retry that restores cascaded dependents, and the propagation that
//! unblocks, aborts and finishes what depends on a finished request. The
//! decisions come from the pure rules in `crate::dag`.

use super::work::require;
use super::{json_map, parse_enum};
use crate::dag::{self, ChildState, DepState, Unblock};
use crate::store::{ts, CompletionArgs, Effects, PendingEntry, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use kiln_shared::work::{WorkRequest, WorkRequestId};
use kiln_shared::worker::RunningWork;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Map, Value};

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
    fn pending_entry(&self) -> StoreResult<Option<PendingEntry>> {
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
    now: String,
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
            // A workflow runs (orchestrates) as soon as it may.
            (TaskType::Workflow, _) => {
                self.tx.execute(
                    "UPDATE work_requests SET status = 'running', started_at = ?2, \
                     workflow_runtime_status = 'running' WHERE id = ?1",
                    params![c.id, self.now],
                )?;
                let mut stmt =
                    self.tx.prepare_cached("SELECT id FROM work_requests WHERE parent = ?1 AND status = 'blocked'")?;
                let children = stmt.query_map([c.id], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
                children.into_iter().try_for_each(|child| self.settle(child))
            }
            _ => {
                self.tx.execute("UPDATE work_requests SET status = 'pending' WHERE id = ?1", [c.id])?;
                if let Some(entry) = c.pending_entry()? {
                    self.effects.pending.push(entry);
                }
                Ok(())
            }
        }
    }

    /// Record a final state and queue its consequences.
    fn finish(
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
        self.finished.push(id);
        self.effects.finished.push(id);
        Ok(())
    }

    /// Follow every finished request to its dependents and its workflow.
    pub fn run(mut self) -> StoreResult<Effects> {
        while let Some(id) = self.finished.pop() {
            let c = core(self.tx, id)?;
            if c.task_type == TaskType::Workflow && c.status == WorkStatus::Aborted {
                for child in self.ids(
                    "SELECT id FROM work_requests WHERE parent = ?1 AND status NOT IN ('completed', 'aborted')",
                    id,
                )? {
                    self.abort(child, "workflow-aborted", None)?;
                }
            }
            for dependent in self.ids("SELECT work_request FROM dependencies WHERE depends_on = ?1", id)? {
                self.settle(dependent)?;
            }
            if let Some(parent) = c.parent {
                self.check_workflow(parent)?;
            }
        }
        Ok(self.effects)
    }

    fn ids(&self, sql: &str, id: WorkRequestId) -> StoreResult<Vec<WorkRequestId>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let ids = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// A running workflow ends once none of its children is in progress.
    fn check_workflow(&mut self, id: WorkRequestId) -> StoreResult<()> {
        if core(self.tx, id)?.status != WorkStatus::Running {
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

pub(super) fn assign(
    tx: &Transaction<'_>,
    id: WorkRequestId,
    worker: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<WorkRequest>> {
    let n = tx.execute(
        "UPDATE work_requests SET status = 'running', worker = ?2, started_at = ?3 WHERE id = ?1 AND status = 'pending'",
        params![id, worker, ts(now)],
    )?;
    if n == 0 {
        return Ok(None);
    }
    tx.execute(
        "INSERT OR REPLACE INTO attempts (work_request, attempt, worker, started_at) \
         SELECT id, attempt, worker, started_at FROM work_requests WHERE id = ?1",
        [id],
    )?;
    require(tx, id).map(Some)
}

pub(super) fn complete(
    tx: &Transaction<'_>,
    id: WorkRequestId,
    args: CompletionArgs,
) -> StoreResult<(WorkRequest, Effects)> {
    let c = core(tx, id)?;
    match c.status {
        WorkStatus::Aborted => {
            return Err(StoreError::conflict("already-aborted", format!("work request {id} was aborted")))
        }
        WorkStatus::Completed => {
            return Err(StoreError::conflict("already-completed", format!("work request {id} is already completed")))
        }
        _ => {}
    }
    // Fencing first: a lost attempt hears that it is stale, whatever the
    // request is doing now (waiting for its retry, or running elsewhere).
    let stale = |attempt: u32| {
        StoreError::conflict(
            "stale-attempt",
            format!("attempt {attempt} of work request {id} is no longer current (current: {})", c.attempt),
        )
    };
    if let Some(worker) = &args.worker {
        let Some(attempt) = args.attempt else {
            return Err(StoreError::invalid("attempt-required", "a worker's completion must name its attempt"));
        };
        if attempt != c.attempt || c.worker.as_deref() != Some(worker.as_str()) {
            return Err(stale(attempt));
        }
    } else if let Some(attempt) = args.attempt.filter(|a| *a != c.attempt) {
        return Err(stale(attempt));
    }
    if !c.status.can_complete() {
        return Err(StoreError::conflict("not-running", format!("work request {id} is {}, not running", c.status)));
    }
    let mut prop = Propagator::new(tx);
    tx.execute(
        "UPDATE attempts SET completed_at = ?3, result = ?4 WHERE work_request = ?1 AND attempt = ?2",
        params![id, c.attempt, prop.now, args.result.as_str()],
    )?;
    let output = Value::Object(args.output_data.clone()).to_string();
    // The agent reports which backend it picked out of the acceptable set.
    if let Some(backend) = args.output_data.get("resolved_backend").and_then(Value::as_str) {
        tx.execute("UPDATE work_requests SET resolved_backend = ?2 WHERE id = ?1", params![id, backend])?;
    }
    if args.result == WorkResult::Error && c.retries_left > 0 && c.requirements.is_some() {
        // Automatic retry: back to pending with the next attempt; nothing cascades.
        tx.execute(
            "UPDATE work_requests SET status = 'pending', attempt = attempt + 1, retries_left = retries_left - 1, \
             worker = NULL, started_at = NULL, output_data = ?2 WHERE id = ?1",
            params![id, output],
        )?;
        if let Some(entry) = c.pending_entry()? {
            prop.effects.pending.push(entry);
        }
        prop.effects.finished.push(id);
    } else {
        prop.finish(id, WorkStatus::Completed, Some(args.result), &args.output_data)?;
    }
    let effects = prop.run()?;
    Ok((require(tx, id)?, effects))
}

pub(super) fn fail_attempt(tx: &Transaction<'_>, work: RunningWork, code: &str) -> StoreResult<Effects> {
    let c = core(tx, work.id)?;
    if c.status != WorkStatus::Running || c.attempt != work.attempt {
        return Ok(Effects::default());
    }
    let output = json!({"errors": [{"code": code}]});
    let output = output.as_object().cloned().unwrap_or_default();
    let args =
        CompletionArgs { worker: None, attempt: Some(work.attempt), result: WorkResult::Error, output_data: output };
    complete(tx, work.id, args).map(|(_, effects)| effects)
}

pub(super) fn abort(tx: &Transaction<'_>, id: WorkRequestId, reason: &str) -> StoreResult<(WorkRequest, Effects)> {
    let c = core(tx, id)?;
    if !c.status.can_abort() {
        return Err(StoreError::conflict("already-finished", format!("work request {id} is already {}", c.status)));
    }
    let mut prop = Propagator::new(tx);
    prop.abort(id, reason, None)?;
    let effects = prop.run()?;
    Ok((require(tx, id)?, effects))
}

pub(super) fn retry(tx: &Transaction<'_>, id: WorkRequestId) -> StoreResult<(WorkRequest, Effects)> {
    let c = core(tx, id)?;
    let retryable = match c.status {
        WorkStatus::Aborted => true,
        WorkStatus::Completed => c.result.is_some_and(WorkResult::can_retry),
        _ => false,
    };
    if !retryable {
        let what = c.result.map_or(c.status.to_string(), |r| format!("{} ({r})", c.status));
        return Err(StoreError::conflict(
            "not-retryable",
            format!("work request {id} is {what}: only failed, errored or aborted work can be retried"),
        ));
    }
    if let Some(parent) = c.parent.filter(|p| core(tx, *p).is_ok_and(|p| p.status.is_final())) {
        return Err(StoreError::conflict("workflow-finished", format!("its workflow {parent} has finished")));
    }
    let mut prop = Propagator::new(tx);
    // A dependency that is still failed would abort it again at once.
    for dep in prop.ids("SELECT depends_on FROM dependencies WHERE work_request = ?1", id)? {
        let d = core(tx, dep)?;
        if dag::dep_state(d.status, d.result, d.allow_failure) == DepState::Poisoned {
            return Err(StoreError::conflict(
                "dependency-failed",
                format!("its dependency {dep} is {}: retry that one first", d.status),
            ));
        }
    }
    tx.execute(
        "UPDATE work_requests SET status = 'blocked', attempt = attempt + 1, retries_left = max_retries, \
         result = NULL, worker = NULL, started_at = NULL, completed_at = NULL, abort_reason = NULL, \
         aborted_by = NULL, output_data = '{}' WHERE id = ?1",
        [id],
    )?;
    // Dependents aborted because of it (and their own, transitively) wait again.
    let mut stack = vec![id];
    while let Some(x) = stack.pop() {
        let restored = prop.ids(
            "SELECT id FROM work_requests WHERE aborted_by = ?1 AND status = 'aborted' AND abort_reason = 'dependency-failed'",
            x,
        )?;
        for d in restored {
            tx.execute(
                "UPDATE work_requests SET status = 'blocked', abort_reason = NULL, aborted_by = NULL, \
                 completed_at = NULL WHERE id = ?1",
                [d],
            )?;
            stack.push(d);
        }
    }
    prop.settle(id)?;
    let effects = prop.run()?;
    Ok((require(tx, id)?, effects))
}
