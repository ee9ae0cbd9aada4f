//! Workflows and the DAG rules end to end (DESIGN §3): real coordinator,
//! workers played by the test through the API.

mod workflow_support;

use kiln_shared::client::Client;
use kiln_shared::work::{Completion, NewWorkRequest, WorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::work::{noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, obj, Coordinator};
use serde_json::{json, Value};
use workflow_support::*;

fn child_of(parent: i64, mut new: NewWorkRequest) -> NewWorkRequest {
    new.parent = Some(parent);
    new
}

fn tolerant(mut new: NewWorkRequest) -> NewWorkRequest {
    new.workflow_data = obj(json!({"allow_failure": true}));
    new
}

/// A noop workflow held back by a gate (a noop only `worker` takes): while
/// it waits, children can be added by hand.
async fn gated_workflow(user: &Client) -> (WorkRequest, WorkRequest) {
    let gate = user.create_work_request(&noop(&[])).await.expect("gate");
    let wf = NewWorkRequest { dependencies: vec![gate.id], ..new(TaskType::Workflow, "noop", json!({})) };
    let wf = user.create_work_request(&wf).await.expect("workflow");
    assert_eq!(wf.status, WorkStatus::Blocked);
    (gate, wf)
}

async fn open_gate(worker: &Client, gate: &WorkRequest) {
    let got = take(worker).await;
    assert_eq!(got.id, gate.id, "the gate is the only pending work");
    let done = Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None };
    worker.complete(got.id, &done).await.expect("open the gate");
}

async fn complete_as(worker: &Client, result: WorkResult) -> WorkRequest {
    run_as_worker(worker, 1, result).await.remove(0)
}

#[tokio::test]
async fn an_empty_workflow_completes_at_populate() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let wf = user.create_work_request(&new(TaskType::Workflow, "noop", json!({}))).await.expect("workflow");
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    assert_eq!(wf.workflow_runtime_status.as_deref(), Some("completed"));
    assert!(children(&user, wf.id).await.is_empty());
}

#[tokio::test]
async fn invalid_workflow_input_gets_400_naming_the_key_and_creates_nothing() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = environment(&user).await;
    let before = count_all(&user).await;
    let cases = [
        ("noop", json!({"colour": "red"}), "colour"),
        ("matrix", json!({"environment": env, "command": ["true"], "targets": []}), "targets"),
        ("matrix", json!({"environment": env, "command": ["true"]}), "targets"),
        (
            "matrix",
            json!({"environment": env, "command": ["true"], "targets": [{"architecture": "amd64", "backend": "docker"}]}),
            "docker",
        ),
        (
            "matrix",
            json!({"environment": env, "targets": [{"architecture": "amd64", "backend": "unshare"}]}),
            "command",
        ),
        ("nosuch", json!({}), "nosuch"),
    ];
    for (name, data, key) in cases {
        let result = user.create_work_request(&new(TaskType::Workflow, name, data.clone())).await;
        let code = if name == "nosuch" { "unknown-task" } else { "invalid-task-data" };
        let msg = expect_api_error(result, 400, code);
        assert!(msg.contains(key), "{data}: the message names {key}: {msg}");
    }
    let missing = json!({"environment": 999_999, "command": ["true"], "targets": [{"architecture": "amd64", "backend": "unshare"}]});
    expect_api_error(
        user.create_work_request(&new(TaskType::Workflow, "matrix", missing)).await,
        400,
        "unknown-artifact",
    );
    let callback = child_of(1, new(TaskType::Internal, "workflow", json!({})));
    expect_api_error(user.create_work_request(&callback).await, 400, "invalid-workflow-data");
    assert_eq!(count_all(&user).await, before, "nothing was created");
}

#[tokio::test]
async fn a_noop_matrix_runs_every_target_then_writes_a_summary() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wf = user.create_work_request(&new(TaskType::Workflow, "matrix", noop_matrix(3))).await.expect("matrix");
    let kids = populated(&user, wf.id, 5).await;
    let names: Vec<&str> = kids.iter().map(|k| k.task_name.as_str()).collect();
    assert_eq!(names, ["noop", "noop", "noop", "synchronization_point", "aggregate_results"]);
    assert!(kids[..3].iter().all(|k| k.status == WorkStatus::Pending), "targets are pending at once");
    assert_eq!(kids[3].dependencies, kids[..3].iter().map(|k| k.id).collect::<Vec<_>>());
    assert_eq!(user.work_request(wf.id).await.expect("wf").workflow_runtime_status.as_deref(), Some("pending"));
    run_as_worker(&worker, 3, WorkResult::Success).await;
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    let aggregate = user.work_request(kids[4].id).await.expect("aggregate");
    assert_eq!((aggregate.task_type, aggregate.result), (TaskType::Server, Some(WorkResult::Success)));
    assert_eq!(aggregate.worker, None, "server tasks run in the coordinator");
    let summary_id = aggregate.output_data["artifacts"][0].as_i64().expect("a summary artifact");
    let summary = user.artifact(summary_id).await.expect("summary");
    assert_eq!(summary.category, "kiln:work-summary");
    assert_eq!(summary.data["counts"], json!({"success": 3}));
    let body = user.download_file(summary_id, "summary.json").await.expect("download").text().await.expect("text");
    let table: Value = serde_json::from_str(&body).expect("summary.json is JSON");
    assert_eq!(table["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(table["items"][0]["worker"], json!("w1"));
}

#[tokio::test]
async fn a_failed_target_still_gets_its_summary_and_fails_the_matrix() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wf = user.create_work_request(&new(TaskType::Workflow, "matrix", noop_matrix(2))).await.expect("matrix");
    let kids = populated(&user, wf.id, 4).await;
    complete_as(&worker, WorkResult::Success).await;
    complete_as(&worker, WorkResult::Failure).await;
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Failure)));
    let aggregate = finished(&user, kids[3].id).await;
    assert_eq!(aggregate.result, Some(WorkResult::Failure));
    let summary = user.artifact(aggregate.output_data["artifacts"][0].as_i64().expect("id")).await.expect("summary");
    assert_eq!(summary.data["counts"], json!({"failure": 1, "success": 1}));
}

#[tokio::test]
async fn a_blocked_request_whose_dependency_fails_is_aborted_unless_allow_failure() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let (gate, wf) = gated_workflow(&user).await;
    let a = user.create_work_request(&child_of(wf.id, noop(&[]))).await.expect("a");
    let b = user.create_work_request(&child_of(wf.id, noop(&[a.id]))).await.expect("b");
    let a2 = user.create_work_request(&child_of(wf.id, tolerant(noop(&[])))).await.expect("a2");
    let b2 = user.create_work_request(&child_of(wf.id, noop(&[a2.id]))).await.expect("b2");
    open_gate(&worker, &gate).await;
    run_as_worker(&worker, 2, WorkResult::Failure).await;
    let b = user.work_request(b.id).await.expect("b");
    assert_eq!((b.status, b.abort_reason.as_deref()), (WorkStatus::Aborted, Some("dependency-failed")));
    assert_eq!(user.work_request(b2.id).await.expect("b2").status, WorkStatus::Pending, "allow_failure");
    complete_as(&worker, WorkResult::Success).await;
    // A child was aborted: the workflow is aborted (that beats `failure`).
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.workflow_runtime_status.as_deref()), (WorkStatus::Aborted, Some("aborted")));
}

#[tokio::test]
async fn an_aborted_dependency_aborts_its_dependents_down_the_dag() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let x = user.create_work_request(&tolerant(noop(&[]))).await.expect("x");
    let y = user.create_work_request(&noop(&[x.id])).await.expect("y");
    let z = user.create_work_request(&noop(&[y.id])).await.expect("z");
    user.work_request_action(x.id, "abort").await.expect("abort x");
    for (id, because) in [(y.id, x.id), (z.id, y.id)] {
        let wr = user.work_request(id).await.expect("dependent");
        assert_eq!(
            (wr.status, wr.abort_reason.as_deref()),
            (WorkStatus::Aborted, Some("dependency-failed")),
            "{id} is aborted because of {because}, whatever allow_failure says"
        );
    }
}

#[tokio::test]
async fn a_workflow_fails_when_a_child_failed_and_succeeds_when_failure_was_allowed() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    for (allow, expected) in [(true, WorkResult::Success), (false, WorkResult::Failure)] {
        let (gate, wf) = gated_workflow(&user).await;
        let child = if allow { tolerant(noop(&[])) } else { noop(&[]) };
        user.create_work_request(&child_of(wf.id, child)).await.expect("child");
        open_gate(&worker, &gate).await;
        complete_as(&worker, WorkResult::Failure).await;
        let wf = finished(&user, wf.id).await;
        assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(expected)), "allow_failure: {allow}");
    }
    // A child aborted by its owner aborts the workflow.
    let (gate, wf) = gated_workflow(&user).await;
    let child = user.create_work_request(&child_of(wf.id, noop(&[]))).await.expect("child");
    open_gate(&worker, &gate).await;
    wait_until(&user, child.id, "pending", is(WorkStatus::Pending)).await;
    user.work_request_action(child.id, "abort").await.expect("abort the child");
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.abort_reason.as_deref()), (WorkStatus::Aborted, Some("child-aborted")));
}

#[tokio::test]
async fn aborting_a_workflow_aborts_its_descendants() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let (gate, wf) = gated_workflow(&user).await;
    let child = user.create_work_request(&child_of(wf.id, noop(&[]))).await.expect("child");
    let sub = user.create_work_request(&child_of(wf.id, new(TaskType::Workflow, "noop", json!({})))).await;
    let sub = sub.expect("sub-workflow");
    let grandchild = user.create_work_request(&child_of(sub.id, noop(&[]))).await.expect("grandchild");
    let stranger = c.user("mallory");
    let refused = stranger.create_work_request(&child_of(wf.id, noop(&[]))).await;
    expect_api_error(refused, 403, "forbidden");
    open_gate(&worker, &gate).await;
    wait_until(&user, grandchild.id, "pending", is(WorkStatus::Pending)).await;
    assert_eq!(user.work_request(sub.id).await.expect("sub").status, WorkStatus::Running);
    assert_eq!(user.work_request(wf.id).await.expect("wf").workflow_runtime_status.as_deref(), Some("pending"));
    user.work_request_action(wf.id, "abort").await.expect("abort the workflow");
    for id in [child.id, sub.id, grandchild.id] {
        let wr = user.work_request(id).await.expect("descendant");
        assert_eq!((wr.status, wr.abort_reason.as_deref()), (WorkStatus::Aborted, Some("workflow-aborted")), "{id}");
    }
    assert!(worker.next(std::time::Duration::from_secs(1)).await.expect("next").is_none(), "nothing left to run");
}

#[tokio::test]
async fn two_callbacks_of_one_workflow_never_run_at_once() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let (gate, wf) = gated_workflow(&user).await;
    let mut callbacks = Vec::new();
    for i in 0..8 {
        let mut cb = child_of(wf.id, new(TaskType::Internal, "workflow", json!({})));
        cb.workflow_data = obj(json!({"step": format!("check-{i}")}));
        callbacks.push(user.create_work_request(&cb).await.expect("callback").id);
    }
    // All eight become pending together when the workflow starts.
    open_gate(&worker, &gate).await;
    let wf = finished(&user, wf.id).await;
    assert_eq!(wf.result, Some(WorkResult::Success));
    let mut spans = Vec::new();
    for id in callbacks {
        let cb = user.work_request(id).await.expect("callback");
        assert_eq!(cb.result, Some(WorkResult::Success), "callback {id} ran its step");
        spans.push((cb.started_at.expect("started"), cb.completed_at.expect("completed"), id));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "callbacks {} and {} overlapped: {pair:?}", pair[0].2, pair[1].2);
    }
}

#[tokio::test]
async fn runtime_status_follows_what_the_workflow_waits_for() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let (gate, wf) = gated_workflow(&user).await;
    let runtime = |wr: WorkRequest| wr.workflow_runtime_status.unwrap_or_default();
    assert_eq!(runtime(user.work_request(wf.id).await.expect("wf")), "blocked");
    let work = user.create_work_request(&child_of(wf.id, noop(&[]))).await.expect("noop");
    let approval = new(TaskType::Wait, "external_approval", json!({}));
    let approval = user.create_work_request(&child_of(wf.id, approval)).await.expect("approval");
    assert_eq!(approval.workflow_data.get("needs_input"), Some(&json!(true)));
    let delay = new(TaskType::Wait, "delay", json!({"delay_until": "2999-01-01T00:00:00Z"}));
    let delay = user.create_work_request(&child_of(wf.id, delay)).await.expect("delay");
    open_gate(&worker, &gate).await;
    let wf_now = wait_until(&user, wf.id, "running", is(WorkStatus::Running)).await;
    assert_eq!(runtime(wf_now), "needs_input");
    let done = Completion { result: WorkResult::Success, attempt: None, output_data: None };
    user.complete(approval.id, &done).await.expect("approve");
    assert_eq!(runtime(user.work_request(wf.id).await.expect("wf")), "waiting");
    let held = take(&worker).await;
    assert_eq!(held.id, work.id);
    assert_eq!(runtime(user.work_request(wf.id).await.expect("wf")), "running");
    admin.complete(delay.id, &done).await.expect("an admin may end a delay early");
    worker
        .complete(held.id, &Completion { result: WorkResult::Success, attempt: Some(held.attempt), output_data: None })
        .await
        .expect("complete");
    assert_eq!(runtime(finished(&user, wf.id).await), "completed");
}
