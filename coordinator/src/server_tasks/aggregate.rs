//! `aggregate_results`: a summary of how a set of work requests ended (by
//! default its siblings in the workflow), written as a `kiln:work-summary`
//! artifact with the table in `summary.json`. It fails when any of them did
//! not succeed, so that a workflow whose targets tolerate failure still ends
//! in `failure` after the summary is written.

use super::{Outcome, ServerTaskError};
use crate::files::FileStore;
use crate::store::{ArtifactFilter, Store, WorkFilter};
use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::work::WorkRequest;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde::Deserialize;
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

/// One summarised request.
fn entry(wr: &WorkRequest) -> Value {
    let outcome = wr.result.map_or_else(|| wr.status.to_string(), |r| r.to_string());
    json!({
        "id": wr.id,
        "task_type": wr.task_type,
        "task_name": wr.task_name,
        "display_name": wr.workflow_data.get("display_name"),
        "target": wr.workflow_data.get("target"),
        "status": wr.status,
        "result": wr.result,
        "outcome": outcome,
        "resolved_backend": wr.resolved_backend,
        "worker": wr.worker,
        "attempt": wr.attempt,
        "started_at": wr.started_at,
        "completed_at": wr.completed_at,
        "exit_code": wr.output_data.get("exit_code"),
        "errors": wr.output_data.get("errors"),
    })
}

/// The summary of `items` and whether all of them succeeded.
pub fn summarize(items: &[WorkRequest]) -> (Value, bool) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    for wr in items {
        let outcome = wr.result.map_or_else(|| wr.status.to_string(), |r| r.to_string());
        *counts.entry(outcome).or_default() += 1;
        let ok = wr.status == WorkStatus::Completed && wr.result.is_some_and(WorkResult::lets_dependents_run);
        if !ok {
            failed.push(wr.id);
        }
    }
    let all_ok = failed.is_empty();
    let summary = json!({
        "total": items.len(),
        "counts": counts,
        "failed": failed,
        "items": items.iter().map(entry).collect::<Vec<_>>(),
    });
    (summary, all_ok)
}

fn targets(store: &dyn Store, task: &WorkRequest, data: &AggregateData) -> Result<Vec<WorkRequest>, ServerTaskError> {
    if let Some(ids) = &data.work_requests {
        return ids
            .iter()
            .map(|id| {
                store
                    .work_request(*id)?
                    .ok_or_else(|| ServerTaskError::invalid(format!("work request {id} does not exist")))
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
        all.extend(page.into_iter().filter(|wr| wr.id != task.id && wr.task_type != TaskType::Internal));
    }
    all.sort_by_key(|wr| wr.id);
    Ok(all)
}

pub fn run(store: &dyn Store, files: &FileStore, task: &WorkRequest) -> Result<Outcome, ServerTaskError> {
    let data: AggregateData = super::parse(&task.task_data)?;
    let items = targets(store, task, &data)?;
    let (summary, all_ok) = summarize(&items);
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
            for key in ["total", "counts", "failed"] {
                meta.insert(key.into(), summary.get(key).cloned().unwrap_or(Value::Null));
            }
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
    output.insert("summary".into(), json!({"total": summary["total"], "counts": summary["counts"]}));
    let result = if all_ok { WorkResult::Success } else { WorkResult::Failure };
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
        let ok = [
            wr(2, WorkStatus::Completed, Some(WorkResult::Success)),
            wr(3, WorkStatus::Completed, Some(WorkResult::Skipped)),
        ];
        let (summary, all_ok) = summarize(&ok);
        assert!(all_ok);
        assert_eq!(summary["counts"], json!({"success": 1, "skipped": 1}));
        assert_eq!(summary["items"][0]["target"]["architecture"], json!("amd64"));
        let mixed = [wr(2, WorkStatus::Completed, Some(WorkResult::Failure)), wr(3, WorkStatus::Aborted, None)];
        let (summary, all_ok) = summarize(&mixed);
        assert!(!all_ok);
        assert_eq!(summary["failed"], json!([2, 3]));
        assert_eq!(summary["counts"], json!({"failure": 1, "aborted": 1}));
    }
}
