//! The Debian workflows' orchestration (issue 11) through a real
//! coordinator over HTTP: `sbuild` fans out over `architectures` ∩ the
//! .dsc's Architecture field with environments found by lookup, and
//! `debian_pipeline` goes build → lintian/autopkgtest → debsign → approval.
//! The Debian tasks are run here by enrolled test workers that complete
//! them over the real API with the output the agent's tasks report (the
//! real tools run in workflow_debian_e2e.rs); signing keys come from a
//! `generate_key` such a worker completes, as a signing agent would.

mod workflow_support;

use kiln_shared::artifact::NewArtifact;
use kiln_shared::client::Client;
use kiln_shared::work::{Completion, WorkRequest};
use kiln_shared::worker::Registration;
use kiln_shared::{TaskType, WorkResult, WorkStatus, WorkerRole};
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, obj, random_suffix, Coordinator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use workflow_support::{children, count_all, finished, new, submission, template, wait_until, SOON};

const DEBIAN_TASKS: &[&str] = &["sbuild", "lintian", "autopkgtest", "extract_test_restrictions"];

async fn artifact(user: &Client, category: &str, data: Value) -> i64 {
    let new = NewArtifact { category: category.into(), data: obj(data), files: vec![], work_request: None };
    user.create_artifact(&new).await.expect("create artifact").id
}

async fn source_package(user: &Client, architecture: &str) -> i64 {
    let data = json!({"name": "kiln-hello-fixture", "version": "1.0", "architecture": architecture,
                      "dsc": "kiln-hello-fixture_1.0.dsc"});
    artifact(user, "kiln:source-package", data).await
}

async fn tarball(user: &Client, architecture: &str, variant: &str) -> i64 {
    let data = json!({"vendor": "debian", "codename": "bookworm", "architecture": architecture, "variant": variant});
    artifact(user, "kiln:system-tarball", data).await
}

/// A worker on `arch` that advertises the Debian tasks.
async fn debian_worker(c: &Coordinator, name: &str, arch: &str) -> Client {
    let mut meta = amd64_metadata();
    meta.insert("system:host_architecture".into(), json!(arch));
    meta.insert("system:architectures".into(), json!([arch]));
    meta.insert(
        "system:executables".into(),
        json!(["sbuild", "lintian", "autopkgtest", "mmdebstrap", "dpkg-source", "schroot"]),
    );
    for task in DEBIAN_TASKS {
        meta.insert(format!("{task}:version"), json!(1));
        meta.insert(format!("{task}:available"), json!(true));
    }
    enrolled_worker(c, name, meta).await
}

/// A signing worker (role `signing`) completing what a signing agent would.
async fn signing_worker(c: &Coordinator, name: &str) -> Client {
    let enrollment = c.token("enrollment", &format!("enroll-{name}"));
    let token: String = format!("{:0<64}", format!("sig{name}{}", random_suffix())).chars().take(64).collect();
    let reg = Registration {
        name: name.into(),
        token: token.clone(),
        role: WorkerRole::Signing,
        enrollment_token: Some(enrollment),
    };
    c.anonymous().register(&reg).await.expect("register the signing worker");
    let client = c.client(&token);
    let meta = json!({"system:worker_role": "signing", "generate_key:version": 1, "sign:version": 1,
                      "debsign:version": 1});
    client.put_metadata(&obj(meta)).await.expect("metadata");
    client
}

/// The next assignment within 10 s (a connection the coordinator's restart
/// broke is tried again).
async fn take(worker: &Client) -> WorkRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match worker.next(Duration::from_secs(10)).await {
            Ok(Some(wr)) => return wr,
            Ok(None) => panic!("no assignment within 10 s"),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("next: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("next: {e}"),
        }
    }
}

async fn complete(worker: &Client, wr: &WorkRequest, result: WorkResult, output: Value) {
    let completion = Completion { result, attempt: Some(wr.attempt), output_data: Some(obj(output)) };
    worker.complete(wr.id, &completion).await.expect("complete");
}

/// A key recorded the way a signing agent's `generate_key` records one.
async fn signing_key(admin: &Client, signer: &Client) -> String {
    let fpr: String = format!("{:0>40}", random_suffix().to_ascii_uppercase())
        .chars()
        .map(|ch| if ch.is_ascii_hexdigit() { ch } else { 'A' })
        .take(40)
        .collect();
    let gen = new(TaskType::Signing, "generate_key", json!({"purpose": "openpgp", "description": "uploads"}));
    let wr = admin.create_work_request(&gen).await.expect("generate_key");
    let assigned = take(signer).await;
    assert_eq!(assigned.id, wr.id);
    complete(signer, &assigned, WorkResult::Success, json!({"fingerprint": fpr, "purpose": "openpgp"})).await;
    fpr
}

async fn set_access(admin: &Client, fpr: &str, access: Value) {
    let path = format!("/api/1/signing-keys/{fpr}/access");
    admin.send(admin.request(reqwest::Method::PUT, &path).json(&access)).await.expect("set access");
}

/// Children by `workflow_data.step`.
async fn steps(user: &Client, workflow: i64) -> BTreeMap<String, WorkRequest> {
    let kids = children(user, workflow).await;
    kids.into_iter().filter_map(|wr| Some((wr.workflow_data.get("step")?.as_str()?.to_owned(), wr))).collect()
}

async fn step_appears(user: &Client, workflow: i64, step: &str) -> WorkRequest {
    let found = kiln_tests::wait_for(SOON, || async { steps(user, workflow).await.remove(step) }).await;
    found.unwrap_or_else(|| panic!("step {step} of workflow {workflow} did not appear within {SOON:?}"))
}

#[tokio::test]
async fn sbuild_builds_each_requested_architecture_the_dsc_supports_on_its_environment() {
    let c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    admin.put_workflow_template("sbuild", &template(json!({"task_name": "sbuild"}))).await.expect("template");
    let source = source_package(&alice, "any all").await;
    tarball(&alice, "amd64", "minbase").await;
    let amd64_env = tarball(&alice, "amd64", "buildd").await;
    let arm64_env = tarball(&alice, "arm64", "minbase").await;
    tarball(&alice, "amd64", "minbase").await; // newer, but buildd is preferred

    let data = json!({"source_artifact": source, "vendor": "debian", "codename": "bookworm",
                      "architectures": ["amd64", "arm64", "all"]});
    let wf = alice.create_workflow(&submission("sbuild", data)).await.expect("start sbuild");
    let kids = workflow_support::populated(&alice, wf.id, 3).await;
    let by_arch: BTreeMap<String, &WorkRequest> =
        kids.iter().map(|k| (k.workflow_data["architecture"].as_str().unwrap_or_default().to_owned(), k)).collect();
    assert_eq!(by_arch.keys().collect::<Vec<_>>(), ["all", "amd64", "arm64"]);
    let expect = [
        ("amd64", "amd64", "any", amd64_env),
        ("arm64", "arm64", "any", arm64_env),
        ("all", "amd64", "all", amd64_env),
    ];
    for (arch, host, components, env) in expect {
        let d = &by_arch[arch].task_data;
        assert_eq!(by_arch[arch].task_name, "sbuild");
        assert_eq!(d["host_architecture"], json!(host), "{arch}");
        assert_eq!(d["build_components"], json!([components]), "{arch}");
        assert_eq!(d["environment"], json!(env), "{arch}");
        assert_eq!(d["input"]["source_artifact"], json!(source));
        assert!(by_arch[arch].workflow_data["display_name"].is_string());
    }

    // Each build goes to a worker of its architecture.
    let amd64 = debian_worker(&c, "amd64-01", "amd64").await;
    let arm64 = debian_worker(&c, "arm64-01", "arm64").await;
    for _ in 0..2 {
        let wr = take(&amd64).await;
        assert_eq!(wr.task_data["host_architecture"], json!("amd64"));
        complete(&amd64, &wr, WorkResult::Success, json!({"binary_packages": [], "build_status": "successful"})).await;
    }
    let wr = take(&arm64).await;
    assert_eq!(wr.task_data["host_architecture"], json!("arm64"));
    complete(&arm64, &wr, WorkResult::Success, json!({"binary_packages": [], "build_status": "successful"})).await;
    let done = finished(&alice, wf.id).await;
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Success)));
}

#[tokio::test]
async fn sbuild_refuses_what_it_cannot_build_at_submission_and_creates_nothing() {
    let c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    admin.put_workflow_template("sbuild", &template(json!({"task_name": "sbuild"}))).await.expect("template");
    let any = source_package(&alice, "any").await;
    let arm_only = source_package(&alice, "arm64").await;
    tarball(&alice, "amd64", "buildd").await;
    let before = count_all(&alice).await;
    let submit = |source: i64, archs: Value| {
        submission(
            "sbuild",
            json!({"source_artifact": source, "vendor": "debian", "codename": "bookworm", "architectures": archs}),
        )
    };
    let msg =
        expect_api_error(alice.create_workflow(&submit(any, json!(["amd64", "i386"]))).await, 400, "invalid-task-data");
    assert!(msg.contains("architectures") && msg.contains("i386"), "{msg}");
    let msg =
        expect_api_error(alice.create_workflow(&submit(arm_only, json!(["amd64"]))).await, 400, "invalid-task-data");
    assert!(msg.contains("architectures") && msg.contains("\"arm64\""), "{msg}");
    let msg =
        expect_api_error(alice.create_workflow(&submit(99_999, json!(["amd64"]))).await, 400, "invalid-task-data");
    assert!(msg.contains("source_artifact"), "{msg}");
    let mut trixie = submit(any, json!(["amd64"]));
    trixie.task_data.insert("codename".into(), json!("trixie"));
    let msg = expect_api_error(alice.create_workflow(&trixie).await, 400, "invalid-task-data");
    assert!(msg.contains("trixie"), "{msg}");
    // The same check for a workflow created as a plain work request.
    let direct = new(
        TaskType::Workflow,
        "sbuild",
        json!({"source_artifact": any, "codename": "bookworm", "architectures": ["i386"]}),
    );
    expect_api_error(alice.create_work_request(&direct).await, 400, "invalid-task-data");
    assert_eq!(count_all(&alice).await, before, "nothing was created");
}

/// A pipeline's task data for `source` on amd64.
fn pipeline(source: i64, extra: Value) -> Value {
    let mut data = json!({"source_artifact": source, "vendor": "debian", "codename": "bookworm",
                          "architectures": ["amd64", "all"]});
    for (k, v) in obj(extra) {
        data[k] = v;
    }
    data
}

#[tokio::test]
async fn debian_pipeline_builds_tests_what_was_built_signs_and_waits_for_approval() {
    let c = Coordinator::start();
    let admin = c.admin();
    let alice_token = c.token("user", "alice");
    let (alice, bob) = (c.client(&alice_token), c.user("bob"));
    let spec = json!({"task_name": "debian_pipeline", "allowed": {"autopkgtest_backend": ["unshare", "incus-lxc"]}});
    admin.put_workflow_template("release", &template(spec)).await.expect("template");
    let signer = signing_worker(&c, "signer-01").await;
    let fpr = signing_key(&admin, &signer).await;
    set_access(&admin, &fpr, json!({"workflow_templates": ["release"]})).await;
    let source = source_package(&alice, "any all").await;
    let env = tarball(&alice, "amd64", "buildd").await;
    let worker = debian_worker(&c, "amd64-01", "amd64").await;

    let data = pipeline(source, json!({"signing_key": fpr, "require_approval": true}));
    let wf = alice.create_workflow(&submission("release", data)).await.expect("start the pipeline");

    // Stage 1: the builds and the test restrictions.
    let mut outputs = BTreeMap::new();
    for _ in 0..3 {
        let wr = take(&worker).await;
        let part = wr.task_data.get("build_components").and_then(|c| c[0].as_str());
        let output = match (wr.task_name.as_str(), part) {
            ("sbuild", Some(part)) => {
                let debs = artifact(&alice, "kiln:binary-packages", json!({"architecture": part})).await;
                let upload = artifact(&alice, "kiln:upload", json!({"changes": format!("{part}.changes")})).await;
                outputs.insert(part.to_owned(), (debs, upload));
                json!({"binary_packages": [debs], "upload": upload, "build_status": "successful", "artifacts": [debs, upload]})
            }
            ("extract_test_restrictions", _) => {
                assert_eq!(wr.task_data["input"]["source_artifact"], json!(source));
                json!({"tests": [{"name": "smoke", "restrictions": ["superficial"]}], "restrictions": ["superficial"], "needs": null})
            }
            other => panic!("unexpected assignment {other:?}: {wr:?}"),
        };
        complete(&worker, &wr, WorkResult::Success, output).await;
    }
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["all", "any"], "{outputs:?}");
    let (any_debs, any_upload) = outputs["any"];
    let (all_debs, all_upload) = outputs["all"];

    // Stage 2: lintian on everything built, autopkgtest with the concrete ids.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let wr = take(&worker).await;
        let input = &wr.task_data["input"];
        match wr.task_name.as_str() {
            "lintian" => assert_eq!(input["binary_artifacts"], json!([any_debs, all_debs])),
            "autopkgtest" => {
                assert_eq!(input["binary_artifacts"], json!([any_debs, all_debs]));
                assert_eq!(wr.task_data["backend"], json!("unshare"), "auto resolved within the allowed list");
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(wr.task_data["environment"], json!(env));
        seen.push(wr.task_name.clone());
        complete(&worker, &wr, WorkResult::Success, json!({"artifacts": []})).await;
    }
    seen.sort();
    assert_eq!(seen, ["autopkgtest", "lintian"]);

    // Stage 3: debsign of each upload on the signing worker.
    let mut unsigned = Vec::new();
    for _ in 0..2 {
        let wr = take(&signer).await;
        assert_eq!((wr.task_type, wr.task_name.as_str()), (TaskType::Signing, "debsign"));
        assert_eq!(wr.task_data["key"], json!(fpr));
        unsigned.push(wr.task_data["unsigned"].as_i64().expect("unsigned"));
        complete(&signer, &wr, WorkResult::Success, json!({"signed_upload": 1})).await;
    }
    unsigned.sort();
    assert_eq!(unsigned, {
        let mut v = vec![any_upload, all_upload];
        v.sort();
        v
    });

    // Stage 4: the approval waits for a person.
    let approval = step_appears(&alice, wf.id, "approval").await;
    assert_eq!((approval.task_type, approval.workflow_data["needs_input"].clone()), (TaskType::Wait, json!(true)));
    let waiting =
        wait_until(&alice, wf.id, "needs_input", |w| w.workflow_runtime_status.as_deref() == Some("needs_input")).await;
    assert_eq!(waiting.status, WorkStatus::Running);
    let yes = Completion { result: WorkResult::Success, attempt: None, output_data: None };
    expect_api_error(bob.complete(approval.id, &yes).await, 403, "forbidden");

    // The tree as `kiln workflow show` draws it, before approval.
    let shown = kiln(&c, &alice_token, &["workflow", "show", &wf.id.to_string()]);
    for needle in [
        "sbuild amd64",
        "sbuild all (on amd64)",
        "lintian",
        "autopkgtest amd64 (unshare)",
        "debsign",
        "approve the upload",
        "needs input",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in\n{shown}");
    }
    let tree: Value =
        serde_json::from_str(&kiln(&c, &alice_token, &["workflow", "show", &wf.id.to_string(), "--json"]))
            .expect("json");
    assert_eq!(tree["children"].as_array().map(Vec::len), Some(children(&alice, wf.id).await.len()));

    alice.complete(approval.id, &yes).await.expect("approve");
    let done = finished(&alice, wf.id).await;
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    let all = steps(&alice, wf.id).await;
    assert!(all.values().all(|w| w.workflow_data["display_name"].is_string()), "every node has a display name");
}

/// Run `kiln ARGS` as the holder of `token`; its stdout (must succeed).
fn kiln(c: &Coordinator, token: &str, args: &[&str]) -> String {
    let out = kiln_tests::kiln_cli(c, token, args);
    assert!(out.status.success(), "kiln {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_failed_build_ends_the_pipeline_in_failure_with_its_log_at_hand() {
    let c = Coordinator::start();
    let admin = c.admin();
    let alice_token = c.token("user", "alice");
    let alice = c.client(&alice_token);
    admin.put_workflow_template("pipeline", &template(json!({"task_name": "debian_pipeline"}))).await.expect("t");
    let source = source_package(&alice, "any").await;
    tarball(&alice, "amd64", "buildd").await;
    let worker = debian_worker(&c, "amd64-01", "amd64").await;
    let wf = alice
        .create_workflow(&submission("pipeline", pipeline(source, json!({"autopkgtest_backend": "unshare"}))))
        .await
        .expect("start");
    let wr = take(&worker).await;
    assert_eq!(wr.task_name, "sbuild");
    let line = kiln_shared::work::LogLine {
        seq: 1,
        ts: chrono::Utc::now(),
        stream: kiln_shared::work::LogStream::Stdout,
        text: "error: hello.c:3: missing ;".into(),
        attempt: None,
    };
    worker.append_log(wr.id, wr.attempt, &[line]).await.expect("log");
    complete(&worker, &wr, WorkResult::Failure, json!({"build_status": "failed", "binary_packages": []})).await;

    let done = finished(&alice, wf.id).await;
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Failure)), "{done:#?}");
    let all = steps(&alice, wf.id).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), ["after-build", "sbuild-amd64"], "nothing after a failed build");
    let check = &all["after-build"];
    assert_eq!(check.result, Some(WorkResult::Failure));
    let message = check.output_data["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("kiln logs {}", wr.id)), "{message}");
    let shown = kiln(&c, &alice_token, &["workflow", "show", &wf.id.to_string()]);
    assert!(shown.contains(&format!("(log: kiln logs {})", wr.id)), "{shown}");
    let log = kiln(&c, &alice_token, &["logs", &wr.id.to_string()]);
    assert!(log.contains("missing ;"), "{log}");
}

#[tokio::test]
async fn tests_that_need_a_machine_end_the_pipeline_with_a_clear_error() {
    let c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    admin.put_workflow_template("pipeline", &template(json!({"task_name": "debian_pipeline"}))).await.expect("t");
    let source = source_package(&alice, "any").await;
    tarball(&alice, "amd64", "buildd").await;
    let worker = debian_worker(&c, "amd64-01", "amd64").await;
    let wf = alice.create_workflow(&submission("pipeline", pipeline(source, json!({})))).await.expect("start");
    for _ in 0..2 {
        let wr = take(&worker).await;
        let output = if wr.task_name == "sbuild" {
            json!({"binary_packages": [], "build_status": "successful"})
        } else {
            json!({"tests": [{"name": "boot", "restrictions": ["isolation-machine"]}], "restrictions": ["isolation-machine"], "needs": "machine"})
        };
        complete(&worker, &wr, WorkResult::Success, output).await;
    }
    let done = finished(&alice, wf.id).await;
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Failure)));
    let check = &steps(&alice, wf.id).await["after-build"];
    assert_eq!(check.result, Some(WorkResult::Error));
    let message = check.output_data["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("need a machine") && message.contains("unshare"), "{message}");
}

#[tokio::test]
async fn signing_keys_the_submitter_may_not_use_are_refused_at_submission() {
    let c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    for name in ["release", "other"] {
        admin.put_workflow_template(name, &template(json!({"task_name": "debian_pipeline"}))).await.expect("t");
    }
    let signer = signing_worker(&c, "signer-01").await;
    let fpr = signing_key(&admin, &signer).await;
    set_access(&admin, &fpr, json!({"workflow_templates": ["release"]})).await;
    let source = source_package(&alice, "any").await;
    tarball(&alice, "amd64", "buildd").await;
    let before = count_all(&alice).await;
    let with_key = |key: &str| pipeline(source, json!({"signing_key": key}));

    let msg = expect_api_error(alice.create_workflow(&submission("other", with_key(&fpr))).await, 403, "forbidden");
    assert!(msg.contains("signing_key") && msg.contains(&fpr), "{msg}");
    let unknown = "F".repeat(40);
    let msg = expect_api_error(
        alice.create_workflow(&submission("release", with_key(&unknown))).await,
        400,
        "invalid-task-data",
    );
    assert!(msg.contains("signing_key"), "{msg}");
    let direct = new(TaskType::Workflow, "debian_pipeline", with_key(&fpr));
    expect_api_error(alice.create_work_request(&direct).await, 403, "forbidden");
    // Claiming the template by hand is not a way around the access list.
    let mut forged = new(TaskType::Workflow, "noop", json!({}));
    forged.workflow_data = obj(json!({"workflow_template": "release"}));
    let msg = expect_api_error(alice.create_work_request(&forged).await, 403, "forbidden");
    assert!(msg.contains("workflow_template"), "{msg}");
    assert_eq!(count_all(&alice).await, before, "nothing was created");

    alice.create_workflow(&submission("release", with_key(&fpr.to_lowercase()))).await.expect("the template may sign");
    set_access(&admin, &fpr, json!({"workflow_templates": ["release"], "revoked": true})).await;
    expect_api_error(alice.create_workflow(&submission("release", with_key(&fpr))).await, 403, "forbidden");
}

#[tokio::test]
async fn the_pipeline_survives_a_coordinator_killed_between_its_stages() {
    let mut c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    admin.put_workflow_template("pipeline", &template(json!({"task_name": "debian_pipeline"}))).await.expect("t");
    let source = source_package(&alice, "any").await;
    tarball(&alice, "amd64", "buildd").await;
    let worker = debian_worker(&c, "amd64-01", "amd64").await;
    let data = pipeline(source, json!({"architectures": ["amd64"], "require_approval": true}));
    let wf = alice.create_workflow(&submission("pipeline", data)).await.expect("start");
    for _ in 0..2 {
        let wr = take(&worker).await;
        let output = match wr.task_name.as_str() {
            "sbuild" => json!({"binary_packages": [], "upload": null, "build_status": "successful"}),
            _ => json!({"tests": [], "restrictions": [], "needs": null}),
        };
        complete(&worker, &wr, WorkResult::Success, output).await;
    }
    // Whether or not the after-build callback ran yet, it runs exactly once.
    c.kill_and_restart();
    for _ in 0..2 {
        let wr = take(&worker).await;
        assert!(["lintian", "autopkgtest"].contains(&wr.task_name.as_str()), "{wr:?}");
        complete(&worker, &wr, WorkResult::Success, json!({})).await;
    }
    c.kill_and_restart();
    let approval = step_appears(&alice, wf.id, "approval").await;
    let yes = Completion { result: WorkResult::Success, attempt: None, output_data: None };
    alice.complete(approval.id, &yes).await.expect("approve");
    let done = finished(&alice, wf.id).await;
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    let all = steps(&alice, wf.id).await;
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["after-build", "after-tests", "approval", "autopkgtest-amd64", "lintian", "sbuild-amd64", "test-restrictions"],
        "one of each: {names:?}"
    );
    assert_eq!(children(&alice, wf.id).await.len(), all.len(), "no duplicates");
}
