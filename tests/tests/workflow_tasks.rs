//! Wait tasks, server tasks, automatic retry delays, priorities and worker
//! task lists, end to end against the real coordinator.

mod workflow_support;

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::work::{Completion, NewWorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::work::{noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, obj, sha256_hex, Coordinator};
use serde_json::json;
use std::time::Duration;
use workflow_support::*;

fn done(result: WorkResult) -> Completion {
    Completion { result, attempt: None, output_data: None }
}

#[tokio::test]
async fn a_delay_runs_at_once_and_completes_at_its_time() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let until = chrono::Utc::now() + chrono::Duration::seconds(2);
    let delay = new(TaskType::Wait, "delay", json!({"delay_until": until.to_rfc3339()}));
    let delay = user.create_work_request(&delay).await.expect("delay");
    assert_eq!((delay.status, delay.worker.as_deref()), (WorkStatus::Running, None), "running with no worker");
    assert_eq!(delay.workflow_data.get("needs_input"), Some(&json!(false)));
    let after = user.create_work_request(&noop(&[delay.id])).await.expect("after");
    assert_eq!(after.status, WorkStatus::Blocked);
    let msg = expect_api_error(user.complete(delay.id, &done(WorkResult::Success)).await, 403, "forbidden");
    assert!(msg.contains("delay_until"), "{msg}");
    let delay = finished(&user, delay.id).await;
    assert_eq!(delay.result, Some(WorkResult::Success));
    assert!(delay.completed_at.expect("completed") >= until, "not before delay_until");
    assert_eq!(user.work_request(after.id).await.expect("after").status, WorkStatus::Pending);
    let bad = new(TaskType::Wait, "delay", json!({"delay_until": "soon"}));
    let msg = expect_api_error(user.create_work_request(&bad).await, 400, "invalid-task-data");
    assert!(msg.contains("delay_until"), "{msg}");
}

#[tokio::test]
async fn a_wait_task_cannot_be_completed_by_a_user_who_may_not() {
    let c = Coordinator::start();
    let alice = c.user("alice");
    let bob = c.user("bob");
    let admin = c.admin();
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let approval = new(TaskType::Wait, "external_approval", json!({}));
    let first = alice.create_work_request(&approval).await.expect("approval");
    assert_eq!(first.status, WorkStatus::Running);
    assert_eq!(first.workflow_data.get("needs_input"), Some(&json!(true)));
    let gated = alice.create_work_request(&noop(&[first.id])).await.expect("gated");
    expect_api_error(bob.complete(first.id, &done(WorkResult::Success)).await, 403, "forbidden");
    let by_worker =
        worker.complete(first.id, &Completion { result: WorkResult::Success, attempt: Some(1), output_data: None });
    assert!(by_worker.await.is_err(), "a worker does not hold a wait task");
    assert_eq!(alice.work_request(first.id).await.expect("first").status, WorkStatus::Running, "unchanged");
    let approved = alice.complete(first.id, &done(WorkResult::Success)).await.expect("its creator approves");
    assert_eq!(approved.result, Some(WorkResult::Success));
    assert_eq!(alice.work_request(gated.id).await.expect("gated").status, WorkStatus::Pending);
    expect_api_error(alice.complete(first.id, &done(WorkResult::Success)).await, 409, "already-completed");
    // An admin may complete anyone's; a rejection fails its dependents.
    let second = alice.create_work_request(&approval).await.expect("approval");
    let after = alice.create_work_request(&noop(&[second.id])).await.expect("after");
    admin.complete(second.id, &done(WorkResult::Failure)).await.expect("an admin rejects");
    assert_eq!(alice.work_request(after.id).await.expect("after").status, WorkStatus::Aborted);
}

#[tokio::test]
async fn server_tasks_are_created_directly_only_by_admins_and_expire_artifacts_by_age_and_category() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let expire =
        |retention: serde_json::Value| new(TaskType::Server, "expire_artifacts", json!({"retention": retention}));
    expect_api_error(user.create_work_request(&expire(json!({"*": 0}))).await, 403, "forbidden");
    expect_api_error(admin.create_work_request(&expire(json!({}))).await, 400, "invalid-task-data");
    let bytes = b"old log".to_vec();
    let file = FileSpec { path: "log.txt".into(), size: bytes.len() as u64, sha256: sha256_hex(&bytes) };
    let log = NewArtifact { category: "test:log".into(), data: obj(json!({})), files: vec![file], work_request: None };
    let log = user.create_artifact(&log).await.expect("log artifact");
    user.upload_file(log.id, "log.txt", bytes).await.expect("upload");
    let kept = NewArtifact { category: "test:keep".into(), data: obj(json!({})), files: vec![], work_request: None };
    let kept = user.create_artifact(&kept).await.expect("kept artifact");
    let env = environment(&user).await;
    // An environment a pending task still names is in use.
    let waiting =
        new(TaskType::Worker, "command", json!({"environment": env, "backend": "unshare", "command": ["true"]}));
    user.create_work_request(&waiting).await.expect("pending command");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let task = expire(json!({"test:log": 1, "kiln:system-tarball": 1}));
    let task = admin.create_work_request(&task).await.expect("an admin creates it");
    let task = finished(&user, task.id).await;
    assert_eq!((task.result, task.worker.as_deref()), (Some(WorkResult::Success), None), "{task:#?}");
    assert_eq!(task.output_data["expired"], json!([log.id]));
    assert_eq!(task.output_data["kept_in_use"], json!(1));
    assert_eq!(task.output_data["removed_files"], json!(1));
    expect_api_error(user.artifact(log.id).await, 404, "not-found");
    user.artifact(kept.id).await.expect("no rule for its category: kept");
    user.artifact(env).await.expect("in use: kept");
}

#[tokio::test]
async fn retry_delays_add_a_delay_before_the_next_attempt() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let flaky = NewWorkRequest { workflow_data: obj(json!({"retry_delays": [2]})), ..noop(&[]) };
    let flaky = user.create_work_request(&flaky).await.expect("flaky");
    let got = take(&worker).await;
    let errored = Completion { result: WorkResult::Error, attempt: Some(got.attempt), output_data: None };
    let after = worker.complete(got.id, &errored).await.expect("error");
    assert_eq!((after.status, after.attempt), (WorkStatus::Blocked, 2), "held back, not pending");
    let delay_id = *after.dependencies.last().expect("a delay dependency");
    let delay = user.work_request(delay_id).await.expect("delay");
    assert_eq!(
        (delay.task_type, delay.task_name.as_str(), delay.status),
        (TaskType::Wait, "delay", WorkStatus::Running)
    );
    assert!(worker.next(Duration::from_secs(1)).await.expect("next").is_none(), "nothing before the delay");
    let again = worker.next(Duration::from_secs(10)).await.expect("next").expect("the retry after the delay");
    assert_eq!((again.id, again.attempt), (flaky.id, 2));
    let waited = again.started_at.expect("started") - after.attempts[0].completed_at.expect("first attempt ended");
    assert!(waited >= chrono::Duration::milliseconds(1500), "waited only {waited}");
}

#[tokio::test]
async fn children_inherit_priority_and_only_admins_raise_it() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let raised = NewWorkRequest { priority: 5, ..new(TaskType::Workflow, "matrix", noop_matrix(1)) };
    expect_api_error(user.create_work_request(&raised).await, 403, "forbidden");
    let wf = admin.create_work_request(&raised).await.expect("an admin raises it");
    let kids = populated(&admin, wf.id, 3).await;
    assert!(
        kids.iter().all(|k| k.priority_base == 5),
        "{:?}",
        kids.iter().map(|k| k.priority_base).collect::<Vec<_>>()
    );
    let lowered = NewWorkRequest { priority: -2, parent: Some(wf.id), ..noop(&[]) };
    let lowered = admin.create_work_request(&lowered).await.expect("relative priority");
    assert_eq!(lowered.priority_base, 3, "the parent's 5 plus -2");
    // The higher priority is handed out first.
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    user.create_work_request(&noop(&[])).await.expect("priority 0");
    assert_eq!(take(&worker).await.id, kids[0].id, "priority 5 goes first");
}

#[tokio::test]
async fn allowlist_beats_denylist() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let both = obj(json!({"tasks_denylist": ["noop"], "tasks_allowlist": ["noop"]}));
    admin.set_static_metadata("w1", &both).await.expect("static metadata");
    let wr = user.create_work_request(&noop(&[])).await.expect("noop");
    let got = take(&worker).await;
    assert_eq!(got.id, wr.id, "the allowlist wins over the denylist");
    let ok = Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None };
    worker.complete(got.id, &ok).await.expect("complete");
    let deny = obj(json!({"tasks_denylist": ["noop"]}));
    admin.set_static_metadata("w1", &deny).await.expect("static metadata");
    user.create_work_request(&noop(&[])).await.expect("noop");
    assert!(worker.next(Duration::from_secs(1)).await.expect("next").is_none(), "denied");
}
