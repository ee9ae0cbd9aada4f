//! `kiln template list|show|put`, `kiln workflow start`, and completing
//! `wait` tasks with `kiln complete`.

use crate::support::{id, Kiln};
use serde_json::json;

#[tokio::test]
async fn templates_are_defined_listed_shown_and_started() {
    let c = kiln_tests::Coordinator::start();
    let admin = Kiln::admin(&c, "root");
    let user = Kiln::user(&c, "alice");
    let spec = r#"{"task_name": "noop", "priority": 2}"#;
    user.run(&["template", "put", "smoke", "--spec", spec]).await.expect_code(77).one_line_error("admin");
    let stored = admin.json(&["template", "put", "smoke", "--spec", spec]).await;
    assert_eq!((stored["name"].as_str(), stored["priority"].as_i64()), (Some("smoke"), Some(2)));
    admin.run(&["template", "put", "x", "--spec", r#"{"task_name": "noop", "bogus": 1}"#]).await.expect_code(64);
    admin.run(&["template", "put", "x", "--spec", r#"{"task_name": "nosuch"}"#]).await.expect_code(64);

    let table = user.run(&["template", "list"]).await.ok().stdout;
    assert!(table.starts_with("NAME") && table.contains("smoke") && table.contains("noop"), "{table}");
    let shown = user.run(&["template", "show", "smoke"]).await.ok().stdout;
    assert!(shown.lines().any(|l| l.starts_with("workflow:") && l.ends_with(" noop")), "{shown}");
    assert_eq!(user.json(&["template", "list"]).await["items"][0]["name"], "smoke");
    user.run(&["template", "show", "nosuch"]).await.expect_code(65);

    // An empty noop workflow completes as soon as it is populated.
    let run = user.run(&["workflow", "start", "smoke", "--wait", "--json"]).await.ok();
    let wf = run.json();
    assert_eq!((wf["task_type"].as_str(), wf["status"].as_str()), (Some("workflow"), Some("completed")));
    assert_eq!(wf["workflow_data"]["workflow_template"], "smoke");
    let human = user.run(&["workflow", "start", "smoke"]).await.ok().stdout;
    assert!(human.starts_with("started workflow ") && human.contains("from template smoke"), "{human}");
    user.run(&["workflow", "start", "nosuch"]).await.expect_code(65).one_line_error("nosuch");
    user.run(&["workflow", "start", "smoke", "--priority", "1"]).await.expect_code(77);
}

#[tokio::test]
async fn wait_tasks_are_completed_by_hand_or_by_their_timer() {
    let c = kiln_tests::Coordinator::start();
    let k = Kiln::user(&c, "approver");
    let approval = k.json(&["submit", "wait", "external_approval"]).await;
    assert_eq!(
        (approval["status"].as_str(), &approval["workflow_data"]["needs_input"]),
        (Some("running"), &json!(true))
    );
    let approval = id(&approval).to_string();
    let other = Kiln::user(&c, "someone-else");
    other.run(&["complete", &approval]).await.expect_code(77);
    let done = k.json(&["complete", &approval, "--output-data", r#"{"approved_by": "approver"}"#]).await;
    assert_eq!((done["status"].as_str(), done["result"].as_str()), (Some("completed"), Some("success")));
    k.run(&["complete", &approval]).await.expect_code(65);

    let rejected = id(&k.json(&["submit", "wait", "external_approval"]).await).to_string();
    let human = k.run(&["complete", &rejected, "--result", "failure"]).await.ok().stdout;
    assert!(human.contains("completed failure"), "{human}");
    k.run(&["wait", &rejected]).await.expect_code(1);

    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let data = json!({"delay_until": soon}).to_string();
    let run = k.run(&["submit", "wait", "delay", "--data", &data, "--wait", "--json"]).await.ok();
    assert_eq!(run.json()["output_data"]["completed_by"], "timer");
}
