//! Helpers the workflow end-to-end tests share: environments, waiting for
//! states, fake workers that run whatever they are given, templates.

#![allow(dead_code)]

use kiln_shared::artifact::NewArtifact;
use kiln_shared::client::{Client, WorkRequestFilter};
use kiln_shared::work::{Completion, NewWorkRequest, WorkRequest};
use kiln_shared::workflow::{NewWorkflow, WorkflowTemplateSpec};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::{obj, wait_for};
use serde_json::{json, Value};
use std::time::Duration;

/// How long the coordinator's own runners may take to act.
pub const SOON: Duration = Duration::from_secs(15);

/// A `kiln:system-tarball` artifact (no files: fake workers never fetch it).
pub async fn environment(user: &Client) -> i64 {
    let new = NewArtifact {
        category: "kiln:system-tarball".into(),
        data: obj(json!({"codename": "bookworm", "architecture": "amd64"})),
        files: vec![],
        work_request: None,
    };
    user.create_artifact(&new).await.expect("create the environment artifact").id
}

/// A work request of any type with `task_data`.
pub fn new(task_type: TaskType, name: &str, data: Value) -> NewWorkRequest {
    NewWorkRequest {
        task_type,
        task_name: name.into(),
        task_data: obj(data),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    }
}

/// A matrix workflow's task data for `n` noop targets.
pub fn noop_matrix(n: usize) -> Value {
    let targets: Vec<Value> = (0..n).map(|_| json!({"architecture": "amd64"})).collect();
    json!({"task": "noop", "targets": targets})
}

/// Wait until `id` satisfies `pred` (within [`SOON`]).
pub async fn wait_until(user: &Client, id: i64, what: &str, pred: impl Fn(&WorkRequest) -> bool) -> WorkRequest {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let wr = user.work_request(id).await.expect("read the work request");
        if pred(&wr) {
            return wr;
        }
        assert!(tokio::time::Instant::now() < deadline, "work request {id} is not {what} within {SOON:?}: {wr:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn finished(user: &Client, id: i64) -> WorkRequest {
    wait_until(user, id, "finished", |wr| wr.status.is_final()).await
}

/// All children of a workflow, oldest first.
pub async fn children(user: &Client, parent: i64) -> Vec<WorkRequest> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let filter = WorkRequestFilter { parent: Some(parent), cursor, limit: Some(500), ..Default::default() };
        let page = user.work_requests(&filter).await.expect("list children");
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    all.reverse();
    all
}

/// Children once the orchestrator has created at least `n`.
pub async fn populated(user: &Client, parent: i64, n: usize) -> Vec<WorkRequest> {
    let got = wait_for(SOON, || async {
        let kids = children(user, parent).await;
        (kids.len() >= n).then_some(kids)
    })
    .await;
    got.unwrap_or_else(|| panic!("workflow {parent} did not get {n} children within {SOON:?}"))
}

/// Take assignments for `n` requests and complete each with `result`.
pub async fn run_as_worker(worker: &Client, n: usize, result: WorkResult) -> Vec<WorkRequest> {
    let mut done = Vec::new();
    for _ in 0..n {
        let wr = worker.next(Duration::from_secs(10)).await.expect("next").expect("an assignment within 10 s");
        let completion = Completion { result, attempt: Some(wr.attempt), output_data: None };
        done.push(worker.complete(wr.id, &completion).await.expect("complete"));
    }
    done
}

/// Every work request there is, for "nothing was created" checks.
pub async fn count_all(user: &Client) -> usize {
    let mut n = 0;
    let mut cursor = None;
    loop {
        let filter = WorkRequestFilter { cursor, limit: Some(500), ..Default::default() };
        let page = user.work_requests(&filter).await.expect("list");
        n += page.items.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => return n,
        }
    }
}

pub fn template(value: Value) -> WorkflowTemplateSpec {
    serde_json::from_value(value).expect("a template spec")
}

pub fn submission(template: &str, data: Value) -> NewWorkflow {
    NewWorkflow { template: template.into(), task_data: obj(data), priority: 0 }
}

pub fn is(status: WorkStatus) -> impl Fn(&WorkRequest) -> bool {
    move |wr| wr.status == status
}
