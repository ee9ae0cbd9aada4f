//! Work requests: loading, listing, creation and dependency edges. State
//! transitions live in `lifecycle`.

use super::lifecycle::{core, Propagator};
use super::{json_map, parse_enum, parse_opt_ts, parse_ts, to_json, SqliteStore};
use crate::store::{ts, Effects, NewWork, PendingEntry, StoreError, StoreResult, WorkFilter, WorkStore};
use kiln_shared::work::{Attempt, WorkRequest, WorkRequestId};
use kiln_shared::worker::RunningWork;
use kiln_shared::{TaskType, WorkStatus};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::{HashSet, VecDeque};

const COLUMNS: &str = "id, task_type, task_name, task_data, workflow_data, parent, status, result, \
    worker, attempt, priority_base, priority_adjustment, resolved_backend, abort_reason, \
    workflow_runtime_status, created_by, created_at, started_at, completed_at, output_data, retries_left";

/// Map one row of `COLUMNS` (dependencies and attempts are loaded after).
fn from_row(row: &Row<'_>) -> rusqlite::Result<StoreResult<WorkRequest>> {
    let text = |i: usize| row.get::<_, String>(i);
    let opt = |i: usize| row.get::<_, Option<String>>(i);
    let build = || -> StoreResult<WorkRequest> {
        Ok(WorkRequest {
            id: row.get(0)?,
            task_type: parse_enum(&text(1)?)?,
            task_name: text(2)?,
            task_data: json_map(&text(3)?)?,
            workflow_data: json_map(&text(4)?)?,
            parent: row.get(5)?,
            status: parse_enum(&text(6)?)?,
            result: opt(7)?.map(|r| parse_enum(&r)).transpose()?,
            worker: opt(8)?,
            attempt: row.get(9)?,
            attempts: Vec::new(),
            dependencies: Vec::new(),
            priority_base: row.get(10)?,
            priority_adjustment: row.get(11)?,
            resolved_backend: opt(12)?,
            abort_reason: opt(13)?,
            workflow_runtime_status: opt(14)?,
            created_by: opt(15)?,
            created_at: parse_ts(&text(16)?)?,
            started_at: parse_opt_ts(opt(17)?)?,
            completed_at: parse_opt_ts(opt(18)?)?,
            output_data: json_map(&text(19)?)?,
            retries_left: row.get(20)?,
        })
    };
    Ok(build())
}

fn fill_relations(conn: &Connection, wr: &mut WorkRequest) -> StoreResult<()> {
    if wr.task_type == TaskType::Workflow {
        let status = super::runtime::workflow_runtime_status(conn, wr.id, wr.status)?;
        wr.workflow_runtime_status = Some(status.to_string());
    }
    let mut stmt =
        conn.prepare_cached("SELECT depends_on FROM dependencies WHERE work_request = ?1 ORDER BY depends_on")?;
    wr.dependencies = stmt.query_map([wr.id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, worker, started_at, completed_at, result, abort_reason \
         FROM attempts WHERE work_request = ?1 ORDER BY attempt",
    )?;
    let raw = stmt
        .query_map([wr.id], |r| {
            Ok((r.get::<_, u32>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, Option<String>>(4)?, r.get(5)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    wr.attempts = raw
        .into_iter()
        .map(|(attempt, worker, started, completed, result, abort_reason)| {
            Ok(Attempt {
                attempt,
                worker,
                started_at: parse_opt_ts(started)?,
                completed_at: parse_opt_ts(completed)?,
                result: result.map(|r| parse_enum(&r)).transpose()?,
                abort_reason,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(())
}

pub(super) fn load(conn: &Connection, id: WorkRequestId) -> StoreResult<Option<WorkRequest>> {
    let Some(wr) =
        conn.query_row(&format!("SELECT {COLUMNS} FROM work_requests WHERE id = ?1"), [id], from_row).optional()?
    else {
        return Ok(None);
    };
    let mut wr = wr?;
    fill_relations(conn, &mut wr)?;
    Ok(Some(wr))
}

pub(super) fn require(conn: &Connection, id: WorkRequestId) -> StoreResult<WorkRequest> {
    load(conn, id)?.ok_or_else(|| StoreError::NotFound(format!("work request {id}")))
}

/// Every dependency must exist and share the request's workflow.
fn check_dependencies(conn: &Connection, parent: Option<WorkRequestId>, deps: &[WorkRequestId]) -> StoreResult<()> {
    let mut seen = HashSet::new();
    for dep in deps {
        if !seen.insert(dep) {
            return Err(StoreError::invalid("duplicate-dependency", format!("dependency {dep} is listed twice")));
        }
        let dep_parent: Option<Option<WorkRequestId>> =
            conn.query_row("SELECT parent FROM work_requests WHERE id = ?1", [dep], |r| r.get(0)).optional()?;
        match dep_parent {
            None => {
                return Err(StoreError::invalid("unknown-dependency", format!("work request {dep} does not exist")))
            }
            Some(p) if p != parent => {
                return Err(StoreError::invalid(
                    "cross-workflow-dependency",
                    format!(
                        "work request {dep} belongs to {}, this one to {}: dependencies must stay within one workflow",
                        describe_parent(p),
                        describe_parent(parent)
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn describe_parent(p: Option<WorkRequestId>) -> String {
    p.map_or_else(|| "no workflow".to_owned(), |p| format!("workflow {p}"))
}

/// Would `id` depending on `deps` close a cycle? Walks the edges from `deps`.
fn closes_cycle(conn: &Connection, id: WorkRequestId, deps: &[WorkRequestId]) -> StoreResult<bool> {
    let mut queue: VecDeque<WorkRequestId> = deps.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut stmt = conn.prepare_cached("SELECT depends_on FROM dependencies WHERE work_request = ?1")?;
    while let Some(next) = queue.pop_front() {
        if next == id {
            return Ok(true);
        }
        if seen.insert(next) {
            for dep in stmt.query_map([next], |r| r.get(0))? {
                queue.push_back(dep?);
            }
        }
    }
    Ok(false)
}

/// Insert a blocked request with its dependency edges (checked by the
/// caller); an edge to a finished request is done already.
pub(super) fn insert(tx: &Connection, new: &NewWork, priority_base: i64) -> StoreResult<WorkRequestId> {
    let requirements = new
        .requirements
        .as_ref()
        .map(|r| serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()?;
    let wake_at = crate::tasks::wake_at(new.task_type, &new.task_name, &new.task_data).map(ts);
    tx.execute(
        "INSERT INTO work_requests (task_type, task_name, task_data, workflow_data, parent, status, \
         attempt, priority_base, priority_adjustment, created_by, created_at, retries_left, max_retries, \
         requirements, wake_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'blocked', 1, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
        params![
            new.task_type.as_str(),
            new.task_name,
            to_json(&new.task_data),
            to_json(&new.workflow_data),
            new.parent,
            priority_base,
            new.priority_adjustment,
            new.created_by,
            ts(chrono::Utc::now()),
            new.max_retries,
            requirements,
            wake_at,
        ],
    )?;
    let id = tx.last_insert_rowid();
    add_edges(tx, id, &new.dependencies)?;
    Ok(id)
}

/// Add edges `id` → `deps` (existing ones are kept as they are).
pub(super) fn add_edges(tx: &Connection, id: WorkRequestId, deps: &[WorkRequestId]) -> StoreResult<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO dependencies (work_request, depends_on, done) \
         SELECT ?1, id, status IN ('completed', 'aborted') FROM work_requests WHERE id = ?2",
    )?;
    for dep in deps {
        stmt.execute(params![id, dep])?;
    }
    Ok(())
}

impl WorkStore for SqliteStore {
    fn create_work_request(&self, new: NewWork) -> StoreResult<(WorkRequest, Effects)> {
        self.write(|tx| {
            let mut priority = new.priority;
            if let Some(parent) = new.parent {
                let p = core(tx, parent).map_err(|_| {
                    StoreError::invalid("unknown-parent", format!("parent work request {parent} does not exist"))
                })?;
                if p.task_type != TaskType::Workflow || p.status.is_final() {
                    return Err(StoreError::invalid(
                        "invalid-parent",
                        format!("work request {parent} is not a workflow in progress"),
                    ));
                }
                priority = crate::dag::child_priority(p.priority, new.priority);
            }
            check_dependencies(tx, new.parent, &new.dependencies)?;
            let id = insert(tx, &new, priority)?;
            let mut prop = Propagator::new(tx);
            prop.settle(id)?;
            let effects = prop.run()?;
            Ok((require(tx, id)?, effects))
        })
    }

    fn add_dependencies(&self, id: WorkRequestId, deps: &[WorkRequestId]) -> StoreResult<(WorkRequest, Effects)> {
        self.write(|tx| {
            let c = core(tx, id)?;
            if !matches!(c.status, WorkStatus::Blocked | WorkStatus::Pending) {
                return Err(StoreError::conflict(
                    "already-started",
                    format!("work request {id} is {}: dependencies can only be added before it starts", c.status),
                ));
            }
            if deps.contains(&id) {
                return Err(StoreError::invalid(
                    "dependency-cycle",
                    format!("work request {id} cannot depend on itself"),
                ));
            }
            check_dependencies(tx, c.parent, deps)?;
            if closes_cycle(tx, id, deps)? {
                return Err(StoreError::invalid(
                    "dependency-cycle",
                    format!("adding {deps:?} to work request {id} would create a dependency cycle"),
                ));
            }
            let mut prop = Propagator::new(tx);
            add_edges(tx, id, deps)?;
            if c.status == WorkStatus::Pending {
                prop.tx.execute("UPDATE work_requests SET status = 'blocked' WHERE id = ?1", [id])?;
                prop.effects.unpending.push(id);
            }
            prop.settle(id)?;
            let effects = prop.run()?;
            Ok((require(tx, id)?, effects))
        })
    }

    fn work_request(&self, id: WorkRequestId) -> StoreResult<Option<WorkRequest>> {
        self.read(|conn| load(conn, id))
    }

    fn list_work_requests(&self, filter: &WorkFilter) -> StoreResult<Vec<WorkRequest>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM work_requests \
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR task_name = ?2) \
                 AND (?3 IS NULL OR parent = ?3) AND (?4 IS NULL OR id < ?4) \
                 ORDER BY id DESC LIMIT ?5"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        filter.status.map(|s| s.as_str()),
                        filter.task_name,
                        filter.parent,
                        filter.before,
                        filter.limit
                    ],
                    from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|wr| {
                    let mut wr = wr?;
                    fill_relations(conn, &mut wr)?;
                    Ok(wr)
                })
                .collect()
        })
    }

    fn abort_work_request(&self, id: WorkRequestId, reason: &str) -> StoreResult<(WorkRequest, Effects)> {
        self.write(|tx| super::transitions::abort(tx, id, reason))
    }

    fn retry_work_request(&self, id: WorkRequestId) -> StoreResult<(WorkRequest, Effects)> {
        self.write(|tx| super::transitions::retry(tx, id))
    }

    fn assign(
        &self,
        id: WorkRequestId,
        worker: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<WorkRequest>> {
        self.write(|tx| super::transitions::assign(tx, id, worker, now))
    }

    fn complete(&self, id: WorkRequestId, args: crate::store::CompletionArgs) -> StoreResult<(WorkRequest, Effects)> {
        self.write(|tx| super::transitions::complete(tx, id, args))
    }

    fn running_for_worker(&self, worker: &str) -> StoreResult<Vec<RunningWork>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, attempt FROM work_requests WHERE worker = ?1 AND status = 'running' ORDER BY id",
            )?;
            let rows = stmt.query_map([worker], |r| Ok(RunningWork { id: r.get(0)?, attempt: r.get(1)? }))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn pending_entries(&self) -> StoreResult<Vec<PendingEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, priority_base + priority_adjustment, requirements FROM work_requests \
                 WHERE status = 'pending' AND requirements IS NOT NULL",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(id, priority, req)| {
                    let requirements = serde_json::from_str(&req)
                        .map_err(|e| StoreError::Corrupt(format!("requirements of {id}: {e}")))?;
                    Ok(PendingEntry { id, priority, requirements })
                })
                .collect()
        })
    }

    fn stale_running(&self, cutoff: chrono::DateTime<chrono::Utc>) -> StoreResult<Vec<RunningWork>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT wr.id, wr.attempt FROM work_requests wr LEFT JOIN workers w ON w.name = wr.worker \
                 WHERE wr.status = 'running' AND wr.worker IS NOT NULL \
                 AND (w.name IS NULL OR w.last_seen IS NULL OR w.last_seen < ?1)",
            )?;
            let rows = stmt.query_map([ts(cutoff)], |r| Ok(RunningWork { id: r.get(0)?, attempt: r.get(1)? }))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn fail_attempt(&self, work: RunningWork, code: &str) -> StoreResult<Effects> {
        self.write(|tx| super::transitions::fail_attempt(tx, work, code))
    }

    fn worker_has_attempt(&self, id: WorkRequestId, worker: &str, attempt: Option<u32>) -> StoreResult<bool> {
        self.read(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM attempts WHERE work_request = ?1 AND worker = ?2 AND (?3 IS NULL OR attempt = ?3)",
                params![id, worker, attempt],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
    }

    fn artifacts_needed_by_worker(&self, worker: &str) -> StoreResult<Vec<i64>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT task_data FROM work_requests WHERE worker = ?1 AND status = 'running'")?;
            let rows = stmt.query_map([worker], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            let mut ids = Vec::new();
            for text in rows {
                ids.extend(crate::tasks::referenced_artifacts(&json_map(&text)?));
            }
            Ok(ids)
        })
    }
}
