//! The coordinator keeps no state of its own runners: a workflow, a delay and
//! an approval in progress carry on after `kill -9` and a restart.

mod workflow_support;

use kiln_shared::work::Completion;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::json;
use workflow_support::*;

#[tokio::test]
async fn workflows_delays_and_approvals_survive_a_restart() {
    let mut c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wf = user.create_work_request(&new(TaskType::Workflow, "matrix", noop_matrix(2))).await.expect("matrix");
    let kids = populated(&user, wf.id, 4).await;
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let delay = new(TaskType::Wait, "delay", json!({"delay_until": until.to_rfc3339()}));
    let delay = user.create_work_request(&delay).await.expect("delay");
    let approval = user.create_work_request(&new(TaskType::Wait, "external_approval", json!({}))).await;
    let approval = approval.expect("approval");

    c.kill_and_restart();
    // A pooled connection to the killed process fails once; then it is gone.
    for client in [&user, &worker] {
        if client.health().await.is_err() {
            client.health().await.expect("the restarted coordinator answers");
        }
    }

    run_as_worker(&worker, 2, WorkResult::Success).await;
    let wf = finished(&user, wf.id).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    let aggregate = finished(&user, kids[3].id).await;
    assert_eq!(aggregate.result, Some(WorkResult::Success), "the summary step ran after the restart");
    let delay = finished(&user, delay.id).await;
    assert!(delay.completed_at.expect("completed") >= until);
    assert_eq!(user.work_request(approval.id).await.expect("approval").status, WorkStatus::Running);
    let done = Completion { result: WorkResult::Success, attempt: None, output_data: None };
    user.complete(approval.id, &done).await.expect("still approvable");
}
