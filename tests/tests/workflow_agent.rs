//! Workflows against a real kiln-agent: a `matrix` submitted through a
//! template runs real `command` tasks in the unshare backend, and its
//! `aggregate_results` step summarises them in an artifact (privileged,
//! gated by KILN_PRIVILEGED_TESTS).

mod workflow_support;

use kiln_shared::client::Client;
use kiln_shared::work::WorkRequest;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::{require_privileged, wait_for, Coordinator};
use serde_json::{json, Value};
use std::time::Duration;
use workflow_support::{children, submission, template};

async fn finished_within(user: &Client, id: i64, within: Duration) -> WorkRequest {
    wait_for(within, || async {
        let wr = user.work_request(id).await.ok()?;
        wr.status.is_final().then_some(wr)
    })
    .await
    .unwrap_or_else(|| panic!("work request {id} did not finish within {within:?}"))
}

async fn summary_of(user: &Client, wf: i64) -> (WorkRequest, Value, Value) {
    let kids = children(user, wf).await;
    let aggregate = kids.iter().find(|k| k.task_name == "aggregate_results").expect("an aggregate step").clone();
    let id = aggregate.output_data["artifacts"][0].as_i64().expect("a summary artifact");
    let artifact = user.artifact(id).await.expect("summary artifact");
    assert_eq!(artifact.category, "kiln:work-summary");
    let body = user.download_file(id, "summary.json").await.expect("download").text().await.expect("text");
    (aggregate, Value::Object(artifact.data), serde_json::from_str(&body).expect("summary.json is JSON"))
}

#[tokio::test]
async fn a_matrix_from_a_template_runs_real_commands_and_summarises_them() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let agent = Agent::start(&c, "builder-01", &[]);
    let spec = json!({"task_name": "matrix", "allowed": {"targets.backend": ["unshare"]},
                      "task_data": {"command": ["/bin/sh", "-c", "echo matrix-ok on $(uname -m); test -e /etc/os-release"]}});
    admin.put_workflow_template("smoke", &template(spec)).await.expect("template");
    let data = json!({"environment": env, "targets": [
        {"architecture": "amd64", "backend": "unshare"},
        {"architecture": "amd64", "backend": "auto"},
    ]});
    let wf = user.create_workflow(&submission("smoke", data)).await.expect("submit");
    let wf = finished_within(&user, wf.id, Duration::from_secs(180)).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Success)), "{}", agent.log());
    let commands: Vec<WorkRequest> =
        children(&user, wf.id).await.into_iter().filter(|k| k.task_name == "command").collect();
    assert_eq!(commands.len(), 2);
    for cmd in &commands {
        assert_eq!((cmd.worker.as_deref(), cmd.resolved_backend.as_deref()), (Some("builder-01"), Some("unshare")));
        let log = user.log(cmd.id, false).await.expect("log").text().await.expect("text");
        assert!(log.contains("matrix-ok on x86_64"), "{log}");
    }
    let (aggregate, data, table) = summary_of(&user, wf.id).await;
    assert_eq!((aggregate.task_type, aggregate.result), (TaskType::Server, Some(WorkResult::Success)));
    assert_eq!(data["counts"], json!({"success": 2}));
    let items = table["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(
            (item["resolved_backend"].as_str(), item["exit_code"].as_i64()),
            (Some("unshare"), Some(0)),
            "{item}"
        );
        assert_eq!(item["worker"], json!("builder-01"));
        assert_eq!(item["target"]["architecture"], json!("amd64"));
    }
    assert_eq!(items[1]["target"]["backend"], json!("auto"), "the target as asked; resolved_backend says what ran");
}

#[tokio::test]
async fn a_failing_command_is_summarised_and_fails_the_matrix() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let agent = Agent::start(&c, "builder-01", &[]);
    let data = json!({"environment": env, "command": ["/bin/sh", "-c", "echo failing on purpose; exit 3"],
                      "targets": [{"architecture": "amd64", "backend": "unshare"}]});
    let wf = kiln_shared::work::NewWorkRequest {
        task_type: TaskType::Workflow,
        task_name: "matrix".into(),
        task_data: data.as_object().cloned().unwrap_or_default(),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    };
    let wf = user.create_work_request(&wf).await.expect("matrix");
    let wf = finished_within(&user, wf.id, Duration::from_secs(180)).await;
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Failure)), "{}", agent.log());
    let (aggregate, data, table) = summary_of(&user, wf.id).await;
    assert_eq!(aggregate.result, Some(WorkResult::Failure));
    assert_eq!(data["counts"], json!({"failure": 1}));
    assert_eq!(table["items"][0]["exit_code"], json!(3));
}
