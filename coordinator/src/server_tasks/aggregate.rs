//! `aggregate_results`: a summary of how a set of work requests ended (by
//! default its siblings in the workflow), written as a `kiln:work-summary`
//! artifact with the table in `summary.json`. It fails when any of them did
//! not succeed, so that a workflow whose targets tolerate failure still ends
//! in `failure` after the summary is written.

use super::{Outcome, ServerTaskError};
use crate::files::FileStore;
use crate::store::{ArtifactFilter, Store, WorkFilter};
use chrono::{DateTime, Utc};
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::work::WorkRequest;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const CATEGORY: &str = "kiln:work-summary";
pub const FILE: &str = "summary.json";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateData {
    /// What to summarise; by default the task's siblings.
    #[serde(default)]
    pub work_requests: Option<Vec<i64>>,
}

/// One summarised request (typed, so 10,000 of them stay small).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub task_type: TaskType,
    pub task_name: String,
    pub display_name: Option<Value>,
    pub target: Option<Value>,
    pub status: WorkStatus,
    pub result: Option<WorkResult>,
    /// The result, or the status when there is none (`aborted`).
    pub outcome: String,
    pub resolved_backend: Option<String>,
    pub worker: Option<String>,
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub exit_code: Option<Value>,
    pub errors: Option<Value>,
}

impl Entry {
    pub fn of(wr: WorkRequest) -> Self {
        let mut wd = wr.workflow_data;
        let mut out = wr.output_data;
        Entry {
            id: wr.id,
            task_type: wr.task_type,
            task_name: wr.task_name,
            display_name: wd.remove("display_name"),
            target: wd.remove("target"),
            status: wr.status,
            result: wr.result,
            outcome: wr.result.map_or_else(|| wr.status.to_string(), |r| r.to_string()),
            resolved_backend: wr.resolved_backend,
            worker: wr.worker,
            attempt: wr.attempt,
            started_at: wr.started_at,
            completed_at: wr.completed_at,
            exit_code: out.remove("exit_code"),
            errors: out.remove("errors"),
        }
    }

    fn succeeded(&self) -> bool {
        self.status == WorkStatus::Completed && self.result.is_some_and(WorkResult::lets_dependents_run)
    }
}

/// What `summary.json` holds.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub total: usize,
    pub counts: BTreeMap<String, u64>,
    pub failed: Vec<i64>,
    pub items: Vec<Entry>,
}

impl Summary {
    pub fn of(items: Vec<Entry>) -> Self {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for e in &items {
            *counts.entry(e.outcome.clone()).or_default() += 1;
        }
        let failed = items.iter().filter(|e| !e.succeeded()).map(|e| e.id).collect();
        Summary { total: items.len(), counts, failed, items }
    }

    pub fn all_succeeded(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The entries to summarise, read one request at a time.
fn entries(store: &dyn Store, task: &WorkRequest, data: &AggregateData) -> Result<Vec<Entry>, ServerTaskError> {
    if let Some(ids) = &data.work_requests {
        return ids
            .iter()
            .map(|id| match store.work_request(*id)? {
                Some(wr) => Ok(Entry::of(wr)),
                None => Err(ServerTaskError::invalid(format!("work request {id} does not exist"))),
            })
            .collect();
    }
    let parent = task.parent.ok_or_else(|| {
        ServerTaskError::invalid("aggregate_results outside a workflow needs task_data.work_requests")
    })?;
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let filter = WorkFilter { parent: Some(parent), before, limit: 500, ..Default::default() };
        let page = store.list_work_requests(&filter)?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let wanted = page.into_iter().filter(|wr| wr.id != task.id && wr.task_type != TaskType::Internal);
        all.extend(wanted.map(Entry::of));
    }
    all.sort_by_key(|e| e.id);
    Ok(all)
}

pub fn run(store: &dyn Store, files: &FileStore, task: &WorkRequest) -> Result<Outcome, ServerTaskError> {
    let data: AggregateData = super::parse(&task.task_data)?;
    let summary = Summary::of(entries(store, task, &data)?);
    // A run interrupted by a restart may have written the artifact already.
    let filter = ArtifactFilter {
        category: Some(CATEGORY.into()),
        data: vec![("work_request".into(), task.id.to_string())],
        limit: 1,
        ..Default::default()
    };
    let artifact = match store.list_artifacts(&filter)?.into_iter().next() {
        Some(existing) => existing,
        None => {
            let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| ServerTaskError::invalid(e.to_string()))?;
            let sha256 = files.put_bytes(&bytes)?;
            let mut meta = Map::new();
            meta.insert("work_request".into(), json!(task.id));
            meta.insert("workflow".into(), json!(task.parent));
            meta.insert("total".into(), json!(summary.total));
            meta.insert("counts".into(), json!(summary.counts));
            meta.insert("failed".into(), json!(summary.failed));
            let new = NewArtifact {
                category: CATEGORY.into(),
                data: meta,
                files: vec![FileSpec { path: FILE.into(), size: bytes.len() as u64, sha256 }],
                work_request: Some(task.id),
            };
            let created = store.create_artifact(&new, "kiln")?;
            store.mark_file_complete(created.id, FILE)?
        }
    };
    let mut output = Map::new();
    output.insert("artifacts".into(), json!([artifact.id]));
    output.insert("summary".into(), json!({"total": summary.total, "counts": summary.counts}));
    let result = if summary.all_succeeded() { WorkResult::Success } else { WorkResult::Failure };
    Ok(Outcome { result, output_data: output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wr(id: i64, status: WorkStatus, result: Option<WorkResult>) -> WorkRequest {
        serde_json::from_value(json!({
            "id": id, "task_type": "worker", "task_name": "command", "task_data": {},
            "workflow_data": {"display_name": format!("t{id}"), "target": {"architecture": "amd64", "backend": "unshare"}},
            "parent": 1, "dependencies": [], "status": status, "result": result, "worker": "w",
            "attempt": 1, "attempts": [], "priority_base": 0, "priority_adjustment": 0, "resolved_backend": "unshare",
            "abort_reason": null, "workflow_runtime_status": null, "created_by": "alice",
            "created_at": "2030-01-01T00:00:00Z", "started_at": null, "completed_at": null,
            "output_data": {}, "retries_left": 3
        }))
        .expect("work request")
    }

    #[test]
    fn counts_outcomes_and_fails_unless_all_succeeded() {
        let summary = |items: Vec<WorkRequest>| Summary::of(items.into_iter().map(Entry::of).collect());
        let ok = summary(vec![
            wr(2, WorkStatus::Completed, Some(WorkResult::Success)),
            wr(3, WorkStatus::Completed, Some(WorkResult::Skipped)),
        ]);
        assert!(ok.all_succeeded());
        let json = serde_json::to_value(&ok).expect("serialize");
        assert_eq!(json["counts"], json!({"success": 1, "skipped": 1}));
        assert_eq!(json["items"][0]["target"]["architecture"], json!("amd64"));
        let mixed =
            summary(vec![wr(2, WorkStatus::Completed, Some(WorkResult::Failure)), wr(3, WorkStatus::Aborted, None)]);
        assert!(!mixed.all_succeeded());
        assert_eq!(mixed.failed, vec![2, 3]);
        assert_eq!(json!(mixed.counts), json!({"failure": 1, "aborted": 1}));
    }
}
