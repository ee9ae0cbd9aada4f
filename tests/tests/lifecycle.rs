//! The work request lifecycle of DESIGN §3 against the real coordinator:
//! unblocking, synchronization points, cascade abort, allow_failure,
//! automatic and manual retry, attempt fencing, abort delivery, lost workers.

use kiln_shared::work::{Completion, NewWorkRequest};
use kiln_shared::worker::{Heartbeat, RunningWork};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::work::{finish, noop, request, sync_point, take};
use kiln_tests::{amd64_metadata, enrolled_worker, obj, wait_for, Coordinator};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn dependencies_unblock_through_a_synchronization_point() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[])).await.expect("b");
    let s = user.create_work_request(&sync_point(&[a.id, b.id])).await.expect("s");
    let d = user.create_work_request(&noop(&[s.id])).await.expect("d");
    assert_eq!(
        (a.status, b.status, s.status, d.status),
        (WorkStatus::Pending, WorkStatus::Pending, WorkStatus::Blocked, WorkStatus::Blocked)
    );
    assert_eq!(d.dependencies, vec![s.id]);

    let first = take(&worker).await;
    assert_eq!(first.id, a.id, "oldest first at equal priority");
    finish(&worker, &first, WorkResult::Success).await;
    assert_eq!(user.work_request(s.id).await.expect("s").status, WorkStatus::Blocked, "b is not done");
    let second = take(&worker).await;
    finish(&worker, &second, WorkResult::Skipped).await;

    let s = user.work_request(s.id).await.expect("s");
    assert_eq!(
        (s.status, s.result),
        (WorkStatus::Completed, Some(WorkResult::Success)),
        "sync point completes when pending"
    );
    assert_eq!(user.work_request(d.id).await.expect("d").status, WorkStatus::Pending);
    assert_eq!(take(&worker).await.id, d.id);
}

#[tokio::test]
async fn failure_cascades_and_manual_retry_restores_dependents() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[a.id])).await.expect("b");
    let s = user.create_work_request(&sync_point(&[b.id])).await.expect("s");
    let d = user.create_work_request(&noop(&[s.id])).await.expect("d");

    let got = take(&worker).await;
    let failed = finish(&worker, &got, WorkResult::Failure).await;
    assert_eq!((failed.status, failed.result), (WorkStatus::Completed, Some(WorkResult::Failure)));
    assert_eq!(failed.attempt, 1, "failure is never retried automatically");
    for id in [b.id, s.id, d.id] {
        let wr = user.work_request(id).await.expect("get");
        assert_eq!(wr.status, WorkStatus::Aborted, "{id} aborted by the cascade");
        assert_eq!(wr.abort_reason.as_deref(), Some("dependency-failed"));
    }
    // A dependent cannot be retried while its dependency is still failed.
    let err = user.work_request_action(b.id, "retry").await.expect_err("dependency still failed");
    assert_eq!((err.status().map(|s| s.as_u16()), err.code()), (Some(409), Some("dependency-failed")));

    let retried = user.work_request_action(a.id, "retry").await.expect("retry");
    assert_eq!((retried.status, retried.attempt, retried.result), (WorkStatus::Pending, 2, None));
    for id in [b.id, s.id, d.id] {
        let wr = user.work_request(id).await.expect("get");
        assert_eq!((wr.status, wr.abort_reason.as_deref()), (WorkStatus::Blocked, None), "{id} restored");
    }
    let again = take(&worker).await;
    assert_eq!((again.id, again.attempt), (a.id, 2));
    finish(&worker, &again, WorkResult::Success).await;
    let a = user.work_request(a.id).await.expect("a");
    assert_eq!(a.attempts.len(), 2);
    assert_eq!(a.attempts[0].result, Some(WorkResult::Failure));
    assert_eq!(a.attempts[1].result, Some(WorkResult::Success));
    let next = take(&worker).await;
    assert_eq!(next.id, b.id);
    // A success cannot be retried.
    let err = user.work_request_action(a.id, "retry").await.expect_err("success is final");
    assert_eq!(err.code(), Some("not-retryable"));
}

#[tokio::test]
async fn allow_failure_lets_dependents_run_but_abort_does_not() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let tolerant = |deps: &[i64]| NewWorkRequest { workflow_data: obj(json!({"allow_failure": true})), ..noop(deps) };
    let a = user.create_work_request(&tolerant(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[a.id])).await.expect("b");
    let got = take(&worker).await;
    finish(&worker, &got, WorkResult::Failure).await;
    assert_eq!(user.work_request(b.id).await.expect("b").status, WorkStatus::Pending);

    let x = user.create_work_request(&tolerant(&[])).await.expect("x");
    let y = user.create_work_request(&noop(&[x.id])).await.expect("y");
    user.work_request_action(x.id, "abort").await.expect("abort");
    let y = user.work_request(y.id).await.expect("y");
    assert_eq!((y.status, y.abort_reason.as_deref()), (WorkStatus::Aborted, Some("dependency-failed")));
}

#[tokio::test]
async fn errors_retry_automatically_three_times_without_cascading() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[a.id])).await.expect("b");
    for attempt in 1..=3 {
        let got = take(&worker).await;
        assert_eq!((got.id, got.attempt), (a.id, attempt));
        let after = finish(&worker, &got, WorkResult::Error).await;
        assert_eq!((after.status, after.attempt, after.retries_left), (WorkStatus::Pending, attempt + 1, 3 - attempt));
        assert_eq!(user.work_request(b.id).await.expect("b").status, WorkStatus::Blocked, "nothing cascades");
        // The stale attempt can no longer complete.
        let err = worker
            .complete(a.id, &Completion { result: WorkResult::Success, attempt: Some(attempt), output_data: None })
            .await
            .expect_err("stale");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(409));
    }
    let last = take(&worker).await;
    assert_eq!(last.attempt, 4);
    let done = finish(&worker, &last, WorkResult::Error).await;
    assert_eq!(
        (done.status, done.result),
        (WorkStatus::Completed, Some(WorkResult::Error)),
        "the last error completes it"
    );
    assert_eq!(done.attempts.len(), 4);
    assert!(done.attempts.iter().all(|a| a.result == Some(WorkResult::Error)));
    assert_eq!(user.work_request(b.id).await.expect("b").status, WorkStatus::Aborted);
}

#[tokio::test]
async fn completions_are_fenced() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let got = take(&worker).await;
    let no_attempt =
        worker.complete(a.id, &Completion { result: WorkResult::Success, attempt: None, output_data: None }).await;
    assert_eq!(no_attempt.expect_err("attempt required").code(), Some("attempt-required"));
    finish(&worker, &got, WorkResult::Success).await;
    let twice =
        worker.complete(a.id, &Completion { result: WorkResult::Failure, attempt: Some(1), output_data: None }).await;
    assert_eq!(twice.expect_err("completes once").code(), Some("already-completed"));
    assert_eq!(user.work_request(a.id).await.expect("a").result, Some(WorkResult::Success));

    let b = user.create_work_request(&noop(&[])).await.expect("b");
    let got = take(&worker).await;
    user.work_request_action(b.id, "abort").await.expect("abort");
    let late = worker
        .complete(b.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await;
    let err = late.expect_err("aborted");
    assert_eq!((err.status().map(|s| s.as_u16()), err.code()), (Some(409), Some("already-aborted")));
    // Users do not complete worker tasks.
    let c2 = user.create_work_request(&noop(&[])).await.expect("c");
    let err = user.complete(c2.id, &Completion { result: WorkResult::Success, attempt: None, output_data: None }).await;
    assert_eq!(err.expect_err("not a wait task").status().map(|s| s.as_u16()), Some(403));
}

#[tokio::test]
async fn abort_reaches_the_agent_through_its_heartbeat() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let got = take(&worker).await;
    let mine = RunningWork { id: a.id, attempt: got.attempt };
    let reply = worker.heartbeat(&Heartbeat { running: vec![mine] }).await.expect("heartbeat");
    assert!(reply.abort.is_empty(), "still wanted");
    let aborted = user.work_request_action(a.id, "abort").await.expect("abort");
    assert_eq!((aborted.status, aborted.abort_reason.as_deref()), (WorkStatus::Aborted, Some("user")));
    assert_eq!(aborted.attempts[0].abort_reason.as_deref(), Some("user"));
    let reply = worker.heartbeat(&Heartbeat { running: vec![mine] }).await.expect("heartbeat");
    assert_eq!(reply.abort, vec![mine]);
    // Unknown work an agent claims to run is aborted too.
    let ghost = RunningWork { id: 999_999, attempt: 1 };
    assert_eq!(worker.heartbeat(&Heartbeat { running: vec![ghost] }).await.expect("hb").abort, vec![ghost]);
    let err = user.work_request_action(a.id, "abort").await.expect_err("already aborted");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(409));
}

#[tokio::test]
async fn silent_worker_loses_its_attempt_after_the_grace_period() {
    let c = Coordinator::start_with(&["--heartbeat-grace", "2"]);
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let got = take(&worker).await;
    let lost = wait_for(Duration::from_secs(15), || async {
        let wr = user.work_request(a.id).await.ok()?;
        (wr.status == WorkStatus::Pending).then_some(wr)
    })
    .await
    .expect("lost attempt goes back to pending");
    assert_eq!(lost.attempt, got.attempt + 1);
    assert_eq!(lost.attempts[0].result, Some(WorkResult::Error));
    assert_eq!(lost.output_data.get("errors"), Some(&json!([{"code": "worker-lost"}])));
    let late = worker
        .complete(a.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await;
    assert_eq!(late.expect_err("stale").code(), Some("stale-attempt"));
}

#[tokio::test]
async fn grace_counts_from_the_coordinators_restart() {
    let mut c = Coordinator::start_with(&["--heartbeat-grace", "4"]);
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let got = take(&worker).await;
    c.kill();
    // Down for longer than the grace period.
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.kill_and_restart();
    let running = RunningWork { id: a.id, attempt: got.attempt };
    for _ in 0..6 {
        let reply = worker.heartbeat(&Heartbeat { running: vec![running] }).await.expect("heartbeat");
        assert!(reply.abort.is_empty(), "the outage must not cost the worker its work");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wr = user.work_request(a.id).await.expect("a");
    assert_eq!((wr.status, wr.attempt), (WorkStatus::Running, got.attempt));
    finish(&worker, &got, WorkResult::Success).await;
}

#[tokio::test]
async fn aborting_a_workflow_aborts_its_children() {
    let c = Coordinator::start();
    let user = c.user("alice");
    // A noop workflow completes as soon as it is populated; waiting for a
    // gate (a noop no worker takes) keeps it open for children added by hand.
    let gate = user.create_work_request(&noop(&[])).await.expect("gate");
    let wf = NewWorkRequest { dependencies: vec![gate.id], ..request(TaskType::Workflow, "noop") };
    let wf = user.create_work_request(&wf).await.expect("workflow");
    assert_eq!(wf.status, WorkStatus::Blocked);
    let child = user.create_work_request(&NewWorkRequest { parent: Some(wf.id), ..noop(&[]) }).await.expect("child");
    assert_eq!(child.status, WorkStatus::Blocked, "its workflow does not run yet");
    let grandchild_dep = user
        .create_work_request(&NewWorkRequest { parent: Some(wf.id), ..noop(&[child.id]) })
        .await
        .expect("dependent child");
    user.work_request_action(wf.id, "abort").await.expect("abort workflow");
    for id in [child.id, grandchild_dep.id] {
        assert_eq!(user.work_request(id).await.expect("child").status, WorkStatus::Aborted);
    }
    let listed = user
        .work_requests(&kiln_shared::client::WorkRequestFilter { parent: Some(wf.id), ..Default::default() })
        .await
        .expect("list children");
    assert_eq!(listed.items.len(), 2);
}

#[tokio::test]
async fn an_assignment_whose_reply_was_lost_is_given_up_and_retried() {
    let c = Coordinator::start_with(&["--lost-assignment-after", "2"]);
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    // The coordinator assigns it, but the agent never hears of it.
    let _lost = take(&worker).await;
    let hb = Heartbeat { running: vec![] };
    assert!(worker.heartbeat(&hb).await.expect("heartbeat").abort.is_empty());
    assert_eq!(user.work_request(a.id).await.expect("a").status, WorkStatus::Running, "not given up at once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.heartbeat(&hb).await.expect("heartbeat");
    let retried = user.work_request(a.id).await.expect("a");
    assert_eq!((retried.status, retried.attempt), (WorkStatus::Pending, 2));
    assert_eq!(retried.output_data.get("errors"), Some(&json!([{"code": "worker-forgot"}])));
    let again = take(&worker).await;
    assert_eq!((again.id, again.attempt), (a.id, 2), "the worker gets it again");
    finish(&worker, &again, WorkResult::Success).await;
}

#[tokio::test]
async fn resending_the_same_completion_is_idempotent() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let got = take(&worker).await;
    let first = finish(&worker, &got, WorkResult::Failure).await;
    // The reply was lost; the agent sends the same completion again.
    let again = finish(&worker, &got, WorkResult::Failure).await;
    assert_eq!((again.status, again.result), (first.status, first.result));
    assert_eq!(again.attempts.len(), 1);
    let other = worker
        .complete(a.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await;
    assert_eq!(other.expect_err("a different result is a conflict").code(), Some("already-completed"));
}
