//! The transitions callers ask for, each inside one transaction:
//! assignment, completion with attempt fencing and automatic retry (after a
//! `wait/delay` when `workflow_data.retry_delays` asks for one), abort, and
//! manual retry that restores cascaded dependents.

use super::json_map;
use super::lifecycle::{core, Propagator};
use super::work::{insert, require};
use crate::dag::{self, DepState};
use crate::store::{ts, CompletionArgs, Effects, NewWork, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use kiln_shared::work::{WorkRequest, WorkRequestId};
use kiln_shared::worker::RunningWork;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use rusqlite::{params, Transaction};
use serde_json::{json, Value};

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
            // The same worker resending the same result for the same attempt
            // (its first reply was lost) is told it is done, not refused.
            let resend = args.worker.is_some()
                && args.worker == c.worker
                && args.attempt == Some(c.attempt)
                && c.result == Some(args.result);
            if resend {
                return Ok((require(tx, id)?, Effects::default()));
            }
            return Err(StoreError::conflict("already-completed", format!("work request {id} is already completed")));
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
        // Automatic retry: the next attempt; nothing cascades.
        let delay = retry_delay(tx, id)?;
        let status = if delay.is_some() { "blocked" } else { "pending" };
        tx.execute(
            "UPDATE work_requests SET status = ?3, attempt = attempt + 1, retries_left = retries_left - 1, \
             worker = NULL, started_at = NULL, output_data = ?2 WHERE id = ?1",
            params![id, output, status],
        )?;
        match delay {
            Some(seconds) => delay_retry(&mut prop, id, seconds)?,
            None => prop.effects.pending.extend(c.pending_entry()?),
        }
        prop.effects.finished.push(id);
    } else {
        prop.finish(id, WorkStatus::Completed, Some(args.result), &args.output_data)?;
    }
    let effects = prop.run()?;
    Ok((require(tx, id)?, effects))
}

/// The delay `workflow_data.retry_delays` asks for before the coming
/// automatic retry, if any.
fn retry_delay(tx: &Transaction<'_>, id: WorkRequestId) -> StoreResult<Option<u64>> {
    let (wd, max, left): (String, u32, u32) =
        tx.query_row("SELECT workflow_data, max_retries, retries_left FROM work_requests WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let wd = json_map(&wd)?;
    let delays: Vec<u64> = wd
        .get("retry_delays")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Ok(dag::retry_delay(&delays, max.saturating_sub(left) + 1))
}

/// Hold the next attempt of `id` behind a new `wait/delay` sibling.
fn delay_retry(prop: &mut Propagator<'_, '_>, id: WorkRequestId, seconds: u64) -> StoreResult<()> {
    let (parent, created_by, attempt, priority): (Option<i64>, Option<String>, u32, i64) = prop.tx.query_row(
        "SELECT parent, created_by, attempt, priority_base + priority_adjustment FROM work_requests WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let until = Utc::now() + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 2).min(1 << 40));
    let data = json!({"delay_until": until.to_rfc3339()});
    let wd = json!({"needs_input": false, "retry_of": id, "attempt": attempt,
                    "step": format!("retry-delay-{id}-{attempt}"), "display_name": format!("delay before retrying {id}")});
    let new = NewWork {
        task_type: TaskType::Wait,
        task_name: "delay".into(),
        task_data: data.as_object().cloned().unwrap_or_default(),
        workflow_data: wd.as_object().cloned().unwrap_or_default(),
        dependencies: Vec::new(),
        parent,
        priority: 0,
        priority_adjustment: 0,
        created_by: created_by.unwrap_or_else(|| "kiln".into()),
        requirements: None,
        max_retries: 0,
    };
    let delay = insert(prop.tx, &new, priority)?;
    prop.tx
        .execute("INSERT INTO dependencies (work_request, depends_on, done) VALUES (?1, ?2, 0)", params![id, delay])?;
    prop.settle(delay)
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
    if c.task_type == TaskType::Workflow {
        return Err(StoreError::conflict(
            "not-retryable",
            format!("work request {id} is a workflow: retry the children that failed while it runs"),
        ));
    }
    tx.execute(
        "UPDATE work_requests SET status = 'blocked', attempt = attempt + 1, retries_left = max_retries, \
         result = NULL, worker = NULL, started_at = NULL, completed_at = NULL, abort_reason = NULL, \
         aborted_by = NULL, output_data = '{}' WHERE id = ?1",
        [id],
    )?;
    // Dependents aborted because of it (and their own, transitively) wait
    // again, on an open edge.
    let mut stack = vec![id];
    while let Some(x) = stack.pop() {
        tx.execute("UPDATE dependencies SET done = 0 WHERE depends_on = ?1", [x])?;
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
