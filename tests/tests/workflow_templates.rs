//! Workflow templates end to end (DESIGN §9): who may define and read them,
//! Debusine's merge, opt-in deep merge, `allowed` lists at submission and
//! when `auto` is resolved, template priority.

mod workflow_support;

use kiln_shared::workflow::NewWorkflow;
use kiln_shared::{TaskType, WorkStatus};
use kiln_tests::work::take;
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, Coordinator};
use serde_json::{json, Value};
use std::time::Duration;
use workflow_support::*;

#[tokio::test]
async fn admins_define_templates_users_read_them_and_bad_ones_get_400() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let spec = template(json!({"task_name": "matrix", "task_data": {"task": "noop"}, "priority": 3}));
    expect_api_error(user.put_workflow_template("smoke", &spec).await, 403, "forbidden");
    let stored = admin.put_workflow_template("smoke", &spec).await.expect("an admin defines it");
    assert_eq!((stored.name.as_str(), stored.priority), ("smoke", 3));
    let listed = user.workflow_templates().await.expect("a user lists them");
    assert_eq!(listed.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["smoke"]);
    let bad = [
        ("t", json!({"task_name": "nosuch"}), "nosuch"),
        ("t", json!({"task_name": "matrix", "allowed": {"targets.backend": "unshare"}}), "allowed.targets.backend"),
        ("t", json!({"task_name": "matrix", "task_data": {"task": "x"}, "allowed": {"task": ["noop"]}}), "task"),
        ("bad name!", json!({"task_name": "matrix"}), "name"),
    ];
    for (name, spec, key) in bad {
        let msg =
            expect_api_error(admin.put_workflow_template(name, &template(spec.clone())).await, 400, "invalid-template");
        assert!(msg.contains(key), "{spec}: {msg}");
    }
    let unknown = user.create_workflow(&submission("nosuch", json!({}))).await;
    expect_api_error(unknown, 404, "not-found");
}

#[tokio::test]
async fn submissions_merge_top_level_keys_and_the_template_wins() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let env = environment(&user).await;
    let spec = json!({"task_name": "matrix", "priority": 4,
                      "task_data": {"command": ["make", "check"], "env": {"CI": "1"}}});
    admin.put_workflow_template("ci", &template(spec)).await.expect("template");
    let data = json!({"environment": env, "command": ["rm", "-rf", "/"], "env": {"USER_VAR": "x"},
                      "targets": [{"architecture": "amd64", "backend": "unshare"}]});
    let wf = user.create_workflow(&submission("ci", data)).await.expect("submitted");
    assert_eq!((wf.task_type, wf.task_name.as_str()), (TaskType::Workflow, "matrix"));
    assert_eq!(wf.task_data["command"], json!(["make", "check"]), "the template's value wins");
    assert_eq!(wf.task_data["env"], json!({"CI": "1"}), "a mapping in the user data is ignored");
    assert_eq!(wf.task_data["environment"], json!(env), "keys only the user gave are kept");
    assert_eq!((wf.priority_base, wf.priority_adjustment), (4, 0), "the template's priority");
    assert_eq!(wf.workflow_data["workflow_template"], json!("ci"));
    let kids = populated(&user, wf.id, 1).await;
    assert_eq!(kids[0].task_data["command"], json!(["make", "check"]));
    assert_eq!(kids[0].priority_base, 4, "children inherit it");
    // Users may lower it, not raise it.
    let raised = NewWorkflow { priority: 1, ..submission("ci", json!({})) };
    expect_api_error(user.create_workflow(&raised).await, 403, "forbidden");
}

#[tokio::test]
async fn deep_merge_is_opt_in_and_template_leaves_still_win() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let env = environment(&user).await;
    let spec = json!({"task_name": "matrix", "merge": "deep", "task_data": {"env": {"CI": "1", "LANG": "C"}}});
    admin.put_workflow_template("deep", &template(spec)).await.expect("template");
    let data = json!({"environment": env, "command": ["true"], "env": {"LANG": "fr_FR", "EXTRA": "y"},
                      "targets": [{"architecture": "amd64", "backend": "unshare"}]});
    let wf = user.create_workflow(&submission("deep", data)).await.expect("submitted");
    assert_eq!(wf.task_data["env"], json!({"CI": "1", "LANG": "C", "EXTRA": "y"}));
}

#[tokio::test]
async fn allowed_values_are_enforced_at_submission_naming_the_key() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let env = environment(&user).await;
    let spec = json!({"task_name": "matrix",
                      "allowed": {"targets.backend": ["unshare", "incus-lxc"], "targets.architecture": ["amd64", "i386"]}});
    admin.put_workflow_template("limited", &template(spec)).await.expect("template");
    let before = count_all(&user).await;
    let target = |arch: &str, backend: &str| json!({"architecture": arch, "backend": backend});
    for (targets, key, value) in [
        (vec![target("amd64", "unshare"), target("amd64", "qemu")], "targets.backend", "qemu"),
        (vec![target("arm64", "unshare")], "targets.architecture", "arm64"),
    ] {
        let data = json!({"environment": env, "command": ["true"], "targets": targets});
        let msg = expect_api_error(user.create_workflow(&submission("limited", data)).await, 400, "not-allowed");
        assert!(msg.contains(key) && msg.contains(value), "names {key} and {value}: {msg}");
    }
    let missing = json!({"environment": env, "targets": [target("amd64", "unshare")]});
    let msg = expect_api_error(user.create_workflow(&submission("limited", missing)).await, 400, "invalid-task-data");
    assert!(msg.contains("command"), "{msg}");
    assert_eq!(count_all(&user).await, before, "nothing was created");
}

#[tokio::test]
async fn auto_is_resolved_within_the_allowed_backends() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let env = environment(&user).await;
    let spec = json!({"task_name": "matrix", "allowed": {"targets.backend": ["incus-lxc"]}});
    admin.put_workflow_template("lxc-only", &template(spec)).await.expect("template");
    let data =
        json!({"environment": env, "command": ["true"], "targets": [{"architecture": "amd64", "backend": "auto"}]});
    let wf = user.create_workflow(&submission("lxc-only", data)).await.expect("auto passes at submission");
    let kids = populated(&user, wf.id, 1).await;
    assert_eq!(kids[0].status, WorkStatus::Pending);
    // An agent with only unshare would take `auto` – but not within this template.
    let unshare_only = enrolled_worker(&c, "unshare-host", amd64_metadata()).await;
    assert!(unshare_only.next(Duration::from_secs(1)).await.expect("next").is_none(), "unshare is not allowed");
    let mut lxc = amd64_metadata();
    lxc.insert("executor:unshare:available".into(), Value::Bool(false));
    lxc.insert("executor:incus-lxc:available".into(), Value::Bool(true));
    let lxc_host = enrolled_worker(&c, "lxc-host", lxc).await;
    assert_eq!(take(&lxc_host).await.id, kids[0].id);
}
