//! Running orchestrators against the store: the jobs ready to run, the
//! per-root lease that keeps orchestrations of one workflow tree apart, and
//! the [`WorkflowContext`] through which an orchestrator creates children,
//! all inside one transaction.

use super::lifecycle::{core, Propagator};
use super::work::insert;
use super::{json_map, parse_enum, SqliteStore};
use crate::store::signing::SigningKey;
use crate::store::workflow::{JobKind, OrchestrationJob, WorkflowStore};
use crate::store::{ts, ArtifactFilter, Effects, NewWork, StoreError, StoreResult};
use crate::workflows::{ChildInfo, ChildSpec, Lookup, Orchestrator, WorkflowContext, WorkflowError, WorkflowInfo};
use chrono::{DateTime, Utc};
use kiln_shared::artifact::Artifact;
use kiln_shared::work::WorkRequestId;
use kiln_shared::{WorkResult, WorkStatus};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// A lease outlives any sane orchestration; a holder that died frees its
/// roots after this long (or at the next start of a coordinator).
const LEASE_SECONDS: i64 = 120;

/// The top-level workflow above `id`.
fn root_of(conn: &Connection, mut id: WorkRequestId) -> StoreResult<WorkRequestId> {
    let mut stmt = conn.prepare_cached("SELECT parent FROM work_requests WHERE id = ?1")?;
    while let Some(parent) = stmt.query_row([id], |r| r.get::<_, Option<i64>>(0)).optional()?.flatten() {
        id = parent;
    }
    Ok(id)
}

fn lease_held(conn: &Connection, root: WorkRequestId, holder: &str) -> StoreResult<bool> {
    let current: Option<String> =
        conn.query_row("SELECT holder FROM orchestration_leases WHERE root = ?1", [root], |r| r.get(0)).optional()?;
    Ok(current.as_deref() == Some(holder))
}

fn workflow_info(conn: &Connection, id: WorkRequestId) -> StoreResult<WorkflowInfo> {
    let (task_name, task_data, workflow_data, priority, created_by): (String, String, String, i64, Option<String>) =
        conn.query_row(
            "SELECT task_name, task_data, workflow_data, priority_base + priority_adjustment, created_by \
             FROM work_requests WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    Ok(WorkflowInfo {
        id,
        task_name,
        task_data: json_map(&task_data)?,
        workflow_data: json_map(&workflow_data)?,
        priority,
        created_by,
    })
}

/// Is the job still to be done (nothing changed since it was listed)?
fn still_due(conn: &Connection, job: &OrchestrationJob) -> StoreResult<bool> {
    let wf = core(conn, job.workflow)?;
    let populated: bool =
        conn.query_row("SELECT populated FROM work_requests WHERE id = ?1", [job.workflow], |r| r.get(0))?;
    Ok(wf.status == WorkStatus::Running
        && match &job.kind {
            JobKind::Populate => !populated,
            JobKind::Callback { callback, .. } => core(conn, *callback)?.status == WorkStatus::Running,
        })
}

fn failure_output(e: &WorkflowError) -> Map<String, Value> {
    let code = if matches!(e, WorkflowError::StageFailed { .. }) { "stage-failed" } else { "orchestrator-failed" };
    let errors = json!({"errors": [{"code": code, "message": e.to_string()}]});
    errors.as_object().cloned().unwrap_or_default()
}

/// A stage that did not succeed is a `failure`; anything else the
/// orchestrator could not do is an `error`.
fn failure_result(e: &WorkflowError) -> WorkResult {
    if matches!(e, WorkflowError::StageFailed { .. }) {
        WorkResult::Failure
    } else {
        WorkResult::Error
    }
}

impl WorkflowStore for SqliteStore {
    fn orchestration_jobs(&self, limit: u32) -> StoreResult<Vec<OrchestrationJob>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, id, task_name, NULL FROM work_requests \
                   WHERE task_type = 'workflow' AND status = 'running' AND populated = 0 \
                 UNION ALL \
                 SELECT c.id, w.id, w.task_name, json_extract(c.workflow_data, '$.step') \
                   FROM work_requests c JOIN work_requests w ON w.id = c.parent \
                   WHERE c.task_type = 'internal' AND c.task_name = 'workflow' AND c.status IN ('pending', 'running') \
                 ORDER BY 1 LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(subject, workflow, workflow_name, step)| {
                    let kind = if subject == workflow {
                        JobKind::Populate
                    } else {
                        JobKind::Callback { callback: subject, step: step.unwrap_or_default() }
                    };
                    Ok(OrchestrationJob { kind, workflow, workflow_name, root: root_of(conn, workflow)? })
                })
                .collect()
        })
    }

    fn begin_orchestration(&self, job: &OrchestrationJob, holder: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        self.write(|tx| {
            let expires = ts(now + chrono::Duration::seconds(LEASE_SECONDS));
            tx.execute(
                "DELETE FROM orchestration_leases WHERE root = ?1 AND expires_at < ?2",
                params![job.root, ts(now)],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO orchestration_leases (root, holder, expires_at) VALUES (?1, ?2, ?3)",
                params![job.root, holder, expires],
            )?;
            if !lease_held(tx, job.root, holder)? {
                return Ok(false);
            }
            if let JobKind::Callback { callback, .. } = &job.kind {
                tx.execute(
                    "UPDATE work_requests SET status = 'running', started_at = ?2 \
                     WHERE id = ?1 AND status IN ('pending', 'running')",
                    params![callback, ts(now)],
                )?;
            }
            Ok(true)
        })
    }

    fn run_orchestration(
        &self,
        job: &OrchestrationJob,
        holder: &str,
        orchestrator: &dyn Orchestrator,
    ) -> StoreResult<Effects> {
        self.write(|tx| {
            if !lease_held(tx, job.root, holder)? {
                return Err(StoreError::conflict("lease-lost", format!("the lease on workflow {} expired", job.root)));
            }
            let effects = if still_due(tx, job)? { orchestrate(tx, job, orchestrator)? } else { Effects::default() };
            tx.execute("DELETE FROM orchestration_leases WHERE root = ?1 AND holder = ?2", params![job.root, holder])?;
            Ok(effects)
        })
    }

    fn release_lease(&self, root: WorkRequestId, holder: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM orchestration_leases WHERE root = ?1 AND holder = ?2", params![root, holder])?;
            Ok(())
        })
    }

    fn release_all_leases(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM orchestration_leases", [])?;
            Ok(())
        })
    }
}

/// Run the orchestrator; an error rolls its changes back and is recorded.
fn orchestrate(tx: &Transaction<'_>, job: &OrchestrationJob, orchestrator: &dyn Orchestrator) -> StoreResult<Effects> {
    tx.execute_batch("SAVEPOINT orchestration")?;
    let mut ctx = SqlContext::new(tx, workflow_info(tx, job.workflow)?)?;
    let outcome = match &job.kind {
        JobKind::Populate => orchestrator.populate(&mut ctx),
        JobKind::Callback { step, .. } => orchestrator.callback(&mut ctx, step),
    };
    let (mut prop, failure) = match outcome {
        Ok(()) => {
            tx.execute_batch("RELEASE orchestration")?;
            (ctx.prop, None)
        }
        Err(WorkflowError::Store(e)) => return Err(e),
        Err(e) => {
            drop(ctx);
            tx.execute_batch("ROLLBACK TO orchestration; RELEASE orchestration")?;
            tracing::warn!(workflow = job.workflow, error = %e, "orchestrator failed");
            (Propagator::new(tx), Some((failure_output(&e), failure_result(&e))))
        }
    };
    match (&job.kind, failure) {
        (JobKind::Populate, failure) => {
            tx.execute("UPDATE work_requests SET populated = 1 WHERE id = ?1", [job.workflow])?;
            match failure {
                None => prop.check_workflow(job.workflow)?,
                Some((out, result)) => prop.finish(job.workflow, WorkStatus::Completed, Some(result), &out)?,
            }
        }
        (JobKind::Callback { callback, .. }, None) => {
            prop.finish(*callback, WorkStatus::Completed, Some(WorkResult::Success), &Map::new())?
        }
        (JobKind::Callback { callback, .. }, Some((out, result))) => {
            prop.finish(*callback, WorkStatus::Completed, Some(result), &out)?
        }
    }
    prop.run()
}

/// The store side of [`WorkflowContext`], inside the orchestration's
/// transaction.
struct SqlContext<'a, 'c> {
    prop: Propagator<'a, 'c>,
    info: WorkflowInfo,
    /// Existing children by step (the idempotency key).
    steps: HashMap<String, WorkRequestId>,
    children: HashSet<WorkRequestId>,
}

impl<'a, 'c> SqlContext<'a, 'c> {
    fn new(tx: &'a Transaction<'c>, info: WorkflowInfo) -> StoreResult<Self> {
        let mut stmt = tx.prepare_cached(
            "SELECT id, CASE WHEN json_type(workflow_data, '$.step') = 'text' \
             THEN json_extract(workflow_data, '$.step') END FROM work_requests WHERE parent = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([info.id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut steps = HashMap::new();
        let mut children = HashSet::new();
        for (id, step) in rows {
            children.insert(id);
            if let Some(step) = step {
                steps.entry(step).or_insert(id);
            }
        }
        Ok(SqlContext { prop: Propagator::new(tx), info, steps, children })
    }

    fn new_work(&self, spec: ChildSpec) -> Result<NewWork, WorkflowError> {
        let step = spec.step.clone();
        let child_error = |source| WorkflowError::Child { step: step.clone(), source };
        let validated =
            crate::tasks::validate(spec.task_type, &spec.task_name, &spec.task_data).map_err(child_error)?;
        let mut requirements = validated.requirements;
        if let (Some(req), Some(narrow)) = (requirements.as_mut(), &spec.backends) {
            req.backends.retain(|b| narrow.contains(b));
            if req.backends.is_empty() {
                return Err(WorkflowError::invalid("backend", format!("step {step}: no acceptable backend is left")));
            }
        }
        if let (Some(req), Some(env)) = (requirements.as_mut(), validated.environment) {
            if req.architecture.is_none() {
                req.architecture = self
                    .prop
                    .tx
                    .query_row("SELECT json_extract(data, '$.architecture') FROM artifacts WHERE id = ?1", [env], |r| {
                        r.get::<_, Option<String>>(0)
                    })
                    .optional()
                    .map_err(StoreError::from)?
                    .flatten();
            }
        }
        let mut wd = spec.workflow_data;
        wd.insert("step".into(), Value::String(spec.step.clone()));
        let workflow_data = crate::tasks::workflow_data(spec.task_type, &spec.task_name, wd).map_err(child_error)?;
        if let Some(dep) = spec.dependencies.iter().find(|d| !self.children.contains(d)) {
            return Err(WorkflowError::invalid("dependencies", format!("step {step}: {dep} is not in this workflow")));
        }
        Ok(NewWork {
            task_type: spec.task_type,
            task_name: spec.task_name,
            task_data: spec.task_data,
            workflow_data,
            dependencies: spec.dependencies,
            parent: Some(self.info.id),
            priority: spec.priority,
            priority_adjustment: 0,
            created_by: self.info.created_by.clone().unwrap_or_else(|| "kiln".into()),
            requirements: requirements.map(|r| r.normalized()),
            max_retries: crate::tasks::DEFAULT_MAX_RETRIES,
        })
    }
}

impl WorkflowContext for SqlContext<'_, '_> {
    fn workflow(&self) -> &WorkflowInfo {
        &self.info
    }

    fn children(&mut self) -> Result<Vec<ChildInfo>, WorkflowError> {
        let mut stmt = self
            .prop
            .tx
            .prepare_cached(
                "SELECT id, CASE WHEN json_type(workflow_data, '$.step') = 'text' \
             THEN json_extract(workflow_data, '$.step') END, task_type, task_name, status, result, output_data, task_data \
             FROM work_requests WHERE parent = ?1 ORDER BY id",
            )
            .map_err(StoreError::from)?;
        let rows = stmt
            .query_map([self.info.id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(StoreError::from)?;
        type Row = (i64, Option<String>, String, String, String, Option<String>, Option<String>, String);
        let build = |(id, step, task_type, task_name, status, result, output, task_data): Row| {
            Ok(ChildInfo {
                id,
                step,
                task_type: parse_enum(&task_type)?,
                task_name,
                status: parse_enum(&status)?,
                result: result.map(|r| parse_enum(&r)).transpose()?,
                output_data: output.as_deref().map(json_map).transpose()?.unwrap_or_default(),
                task_data: json_map(&task_data)?,
            })
        };
        rows.into_iter().map(build).collect::<StoreResult<Vec<_>>>().map_err(WorkflowError::from)
    }

    fn ensure_child(&mut self, spec: ChildSpec) -> Result<WorkRequestId, WorkflowError> {
        if let Some(id) = self.steps.get(&spec.step) {
            return Ok(*id);
        }
        let step = spec.step.clone();
        let new = self.new_work(spec)?;
        let priority = crate::dag::child_priority(self.info.priority, new.priority);
        let id = insert(self.prop.tx, &new, priority)?;
        self.steps.insert(step, id);
        self.children.insert(id);
        self.prop.settle(id)?;
        Ok(id)
    }

    fn lookup(&self) -> &dyn Lookup {
        self
    }
}

impl Lookup for SqlContext<'_, '_> {
    fn artifact(&self, id: i64) -> StoreResult<Option<Artifact>> {
        super::artifacts::load(self.prop.tx, id)
    }

    fn artifacts(&self, category: &str, data: &[(String, String)], limit: u32) -> StoreResult<Vec<Artifact>> {
        let filter = ArtifactFilter { category: Some(category.to_owned()), data: data.to_vec(), before: None, limit };
        super::artifacts::query(self.prop.tx, &filter)
    }

    fn signing_key(&self, fingerprint: &str) -> StoreResult<Option<SigningKey>> {
        super::signing::load(self.prop.tx, fingerprint)
    }
}
