//! Tasks survive everything (the tasks-survive issue): kill -9 and restarts
//! of the agent, restarts and outages of the coordinator, lost attempts, a
//! damaged journal. Each test asserts no lost and no duplicated result and a
//! complete log.

use kiln_shared::client::Client;
use kiln_shared::work::{NewWorkRequest, WorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::work::finished_within;
use kiln_tests::{require_privileged, wait_for, Coordinator};
use serde_json::{json, Value};
use std::time::Duration;

/// A task printing `n` numbered lines, one every `gap` seconds.
fn counting(env: i64, n: u32, gap: &str) -> NewWorkRequest {
    let script = format!(
        "i=1; while [ $i -le {n} ]; do echo line $i; i=$((i+1)); sleep {gap}; done; echo done > $KILN_OUTPUT/done"
    );
    NewWorkRequest {
        task_type: TaskType::Worker,
        task_name: "command".into(),
        task_data: json!({"environment": env, "backend": "unshare", "command": ["/bin/sh", "-c", script]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    }
}

async fn texts(user: &Client, id: i64) -> Vec<(u64, String)> {
    let Ok(resp) = user.log(id, false).await else { return Vec::new() };
    let body = resp.text().await.unwrap_or_default();
    body.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["seq"].as_u64().unwrap_or(0), v["text"].as_str().unwrap_or("").to_owned()))
        .collect()
}

async fn wait_line(user: &Client, id: i64, line: &str) {
    wait_for(Duration::from_secs(60), || async { texts(user, id).await.iter().any(|(_, t)| t == line).then_some(()) })
        .await
        .unwrap_or_else(|| panic!("{line:?} never reached the log of {id}"));
}

/// The whole log, each line once and in order, and exactly one result.
async fn assert_complete(user: &Client, wr: &WorkRequest, n: u32) {
    assert_eq!((wr.status, wr.result), (WorkStatus::Completed, Some(WorkResult::Success)), "{:?}", wr.output_data);
    assert_eq!(wr.attempts.len(), 1, "one attempt, one completion");
    let lines = texts(user, wr.id).await;
    let seqs: Vec<u64> = lines.iter().map(|(s, _)| *s).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "no duplicated or reordered seq");
    let numbered: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).filter(|t| t.starts_with("line ")).collect();
    let expected: Vec<String> = (1..=n).map(|i| format!("line {i}")).collect();
    assert_eq!(numbered, expected, "every line exactly once");
    let artifacts = wr.output_data["artifacts"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(artifacts, 2, "one output and one log artifact, not re-uploaded");
    let outputs = user.artifacts(&[("category", "kiln:task-output")]).await.expect("list");
    assert_eq!(outputs.items.iter().filter(|a| a.work_request == Some(wr.id)).count(), 1);
}

async fn setup(coordinator_flags: &[&str]) -> (Coordinator, Client, i64) {
    let c = Coordinator::start_with(coordinator_flags);
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    (c, user, env)
}

#[tokio::test]
async fn kill_9_of_the_agent_mid_task_loses_nothing() {
    require_privileged!();
    let (c, user, env) = setup(&[]).await;
    let mut agent = Agent::start(&c, "a1", &[]);
    let wr = user.create_work_request(&counting(env, 8, "0.5")).await.expect("create");
    wait_line(&user, wr.id, "line 2").await;
    agent.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.restart();
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_complete(&user, &done, 8).await;
    assert!(agent.log().contains("resuming a task from the journal"), "{}", agent.log());
}

#[tokio::test]
async fn an_agent_restarted_again_and_again_during_one_task() {
    require_privileged!();
    let (c, user, env) = setup(&[]).await;
    let mut agent = Agent::start(&c, "a1", &[]);
    let wr = user.create_work_request(&counting(env, 12, "0.5")).await.expect("create");
    wait_line(&user, wr.id, "line 1").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        agent.restart();
    }
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_complete(&user, &done, 12).await;
}

#[tokio::test]
async fn the_coordinator_killed_and_restarted_mid_task() {
    require_privileged!();
    let (mut c, user, env) = setup(&[]).await;
    let _agent = Agent::start(&c, "a1", &[]);
    let wr = user.create_work_request(&counting(env, 8, "0.5")).await.expect("create");
    wait_line(&user, wr.id, "line 2").await;
    c.kill_and_restart();
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_complete(&user, &done, 8).await;
}

#[tokio::test]
async fn the_coordinator_down_for_longer_than_the_task() {
    require_privileged!();
    let (mut c, user, env) = setup(&[]).await;
    let agent = Agent::start(&c, "a1", &[]);
    let wr = user.create_work_request(&counting(env, 4, "0.5")).await.expect("create");
    wait_line(&user, wr.id, "line 1").await;
    c.kill();
    // The task finishes while nobody can hear about it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(agent.log().contains("waiting for the coordinator"), "the agent says what it waits for");
    c.kill_and_restart();
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_complete(&user, &done, 4).await;
}

#[tokio::test]
async fn a_lost_attempts_late_result_is_refused() {
    require_privileged!();
    let (c, user, env) = setup(&["--heartbeat-grace", "3"]).await;
    let mut first = Agent::start(&c, "a1", &[]);
    let wr = user.create_work_request(&counting(env, 6, "0.5")).await.expect("create");
    wait_line(&user, wr.id, "line 1").await;
    // The agent vanishes; its shim runs on, but the attempt is given up.
    first.kill();
    wait_for(Duration::from_secs(30), || async {
        let wr = user.work_request(wr.id).await.ok()?;
        (wr.status == WorkStatus::Pending).then_some(())
    })
    .await
    .expect("the attempt is lost after the grace period");
    let _second = Agent::start(&c, "a2", &[]);
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_eq!((done.result, done.attempt), (Some(WorkResult::Success), 2));
    // The first agent comes back with attempt 1's result: refused.
    first.restart();
    wait_for(Duration::from_secs(30), || async { first.log().contains("result refused").then_some(()) })
        .await
        .expect("the stale result is refused");
    let after = user.work_request(wr.id).await.expect("get");
    assert_eq!((after.result, after.attempt, after.attempts.len()), (Some(WorkResult::Success), 2, 2));
    assert_eq!(after.attempts[0].result, Some(WorkResult::Error));
    assert_eq!(after.attempts[1].worker.as_deref(), Some("a2"));
}

#[tokio::test]
async fn a_corrupted_journal_record_does_not_stop_the_agent() {
    require_privileged!();
    let (c, user, env) = setup(&[]).await;
    let mut agent = Agent::start(&c, "a1", &[]);
    let first = user.create_work_request(&counting(env, 1, "0")).await.expect("create");
    finished_within(&user, first.id, Duration::from_secs(60)).await;
    agent.kill();
    let journal = agent.data_dir.path().join("journal");
    std::fs::write(journal.join("99-1.json"), b"{\"version\": 1, \"id\": ").expect("corrupt record");
    agent.restart();
    let second = user.create_work_request(&counting(env, 2, "0")).await.expect("create");
    let done = finished_within(&user, second.id, Duration::from_secs(60)).await;
    assert_eq!(done.result, Some(WorkResult::Success));
    assert!(agent.log().contains("moved aside"), "{}", agent.log());
    assert_eq!(std::fs::read_dir(journal.join("corrupt")).expect("corrupt dir").count(), 1);
}

#[tokio::test]
async fn drain_takes_no_new_work_and_lets_running_work_finish() {
    require_privileged!();
    let (c, user, env) = setup(&[]).await;
    let agent = Agent::start(&c, "a1", &[]);
    let running = user.create_work_request(&counting(env, 6, "0.5")).await.expect("create");
    wait_line(&user, running.id, "line 1").await;
    let drain = |extra: &[&str]| {
        std::process::Command::new(kiln_tests::binary("kiln-agent"))
            .arg("--data-dir")
            .arg(agent.data_dir.path())
            .arg("drain")
            .args(extra)
            .output()
            .expect("drain")
    };
    assert!(drain(&[]).status.success());
    let queued = user.create_work_request(&counting(env, 1, "0")).await.expect("create");
    let done = finished_within(&user, running.id, Duration::from_secs(60)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "running work finishes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        user.work_request(queued.id).await.expect("get").status,
        WorkStatus::Pending,
        "no new work while draining"
    );
    assert!(drain(&["--cancel"]).status.success());
    let queued = finished_within(&user, queued.id, Duration::from_secs(60)).await;
    assert_eq!(queued.result, Some(WorkResult::Success));
}
