//! The shortest path through the contract: a user submits, a worker takes
//! it with `next`, completes it, and the user sees the result.

use kiln_shared::work::{Completion, NewWorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::Map;
use std::time::Duration;

#[tokio::test]
async fn submit_take_complete() {
    let c = Coordinator::start();
    assert_eq!(c.anonymous().health().await.expect("health").status, "ok");
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "builder-01", amd64_metadata()).await;
    let new = NewWorkRequest {
        task_type: TaskType::Worker,
        task_name: "noop".into(),
        task_data: Map::new(),
        dependencies: vec![],
        priority: 0,
        workflow_data: Map::new(),
        parent: None,
    };
    let wr = user.create_work_request(&new).await.expect("create");
    assert_eq!(wr.status, WorkStatus::Pending);
    let got = worker.next(Duration::from_secs(2)).await.expect("next").expect("assigned");
    assert_eq!(got.id, wr.id);
    assert_eq!(got.status, WorkStatus::Running);
    assert_eq!(got.worker.as_deref(), Some("builder-01"));
    let done = worker
        .complete(wr.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await
        .expect("complete");
    assert_eq!(done.status, WorkStatus::Completed);
    let seen = user.work_request(wr.id).await.expect("get");
    assert_eq!(seen.result, Some(WorkResult::Success));
    assert_eq!(seen.attempts.len(), 1);
    assert_eq!(seen.attempts[0].worker.as_deref(), Some("builder-01"));
    assert_eq!(seen.attempts[0].result, Some(WorkResult::Success));
}
