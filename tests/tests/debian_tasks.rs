//! The Debian worker tasks through a real coordinator and a real kiln-agent
//! running Debian's own tools: `mmdebstrap` makes an environment that the
//! artifact lookup finds, `sbuild` builds the fixture and GNU hello from the
//! archive, `lintian` and `autopkgtest` check what was built, a broken
//! package fails with a readable build log (privileged: namespaces, the
//! network to deb.debian.org; gated by KILN_PRIVILEGED_TESTS).

use kiln_shared::client::Client;
use kiln_shared::WorkResult;
use kiln_tests::agent::Agent;
use kiln_tests::debian::{assert_result, buildd_environment, fixture_dsc, import_dsc, run_task, Fixture};
use kiln_tests::work::log_text;
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, obj, require_privileged, wait_for, Coordinator};
use serde_json::{json, Value};
use std::time::Duration;

const BUILD: Duration = Duration::from_secs(900);

async fn file_text(user: &Client, artifact: i64, suffix: &str) -> String {
    let a = user.artifact(artifact).await.expect("artifact");
    let f = a.files.iter().find(|f| f.path.ends_with(suffix)).unwrap_or_else(|| panic!("no *{suffix} in {a:?}"));
    user.download_file(artifact, &f.path).await.expect("download").text().await.expect("text")
}

fn file_names(a: &kiln_shared::artifact::Artifact) -> Vec<String> {
    a.files.iter().map(|f| f.path.clone()).collect()
}

#[tokio::test]
async fn mmdebstrap_makes_an_environment_the_lookup_finds() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let agent = Agent::start(&c, "builder-mm", &[]);
    let data = json!({
        "bootstrap_options": {"architecture": "amd64", "variant": "minbase", "extra_packages": ["hello"]},
        "bootstrap_repositories": [{"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "components": ["main"]}],
    });
    let wr = run_task(&user, "mmdebstrap", data, BUILD).await;
    assert_result(&user, &wr, WorkResult::Success).await;
    assert_eq!(wr.worker.as_deref(), Some("builder-mm"), "{}", agent.log());
    let id = wr.output_data["system_tarball"].as_i64().expect("system_tarball");
    assert!(wr.output_data["provenance"]["mmdebstrap"].as_str().is_some_and(|v| !v.is_empty()), "{:?}", wr.output_data);
    let artifact = user.artifact(id).await.expect("artifact");
    assert_eq!(artifact.category, "kiln:system-tarball");
    assert_eq!(
        (artifact.data["codename"].clone(), artifact.data["architecture"].clone(), artifact.data["variant"].clone()),
        (json!("bookworm"), json!("amd64"), json!("minbase"))
    );
    assert!(artifact.data["packages"].as_u64().is_some_and(|n| n > 50), "{:?}", artifact.data);
    let packages = file_text(&user, id, "packages.txt").await;
    assert!(packages.lines().any(|l| l.starts_with("hello ")), "extra_packages installed: {packages}");
    let list = artifact.data["package_list"].as_array().expect("package_list");
    assert!(list.contains(&json!("hello")) && list.contains(&json!("apt")), "{list:?}");
    let found = user
        .artifacts(&[("category", "kiln:system-tarball"), ("codename", "bookworm"), ("architecture", "amd64")])
        .await
        .expect("lookup");
    assert_eq!(found.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![id]);
    let none = user.artifacts(&[("category", "kiln:system-tarball"), ("codename", "trixie")]).await.expect("lookup");
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn the_fixture_is_built_linted_and_tested() {
    require_privileged!();
    let c = Coordinator::start();
    let token = c.token("user", "alice");
    let user = c.client(&token);
    let agent = Agent::start(&c, "builder-deb", &[]);
    let env = buildd_environment(&user).await;
    let fixture = fixture_dsc(Fixture::Good);
    let source = import_dsc(&c, &token, &fixture.dsc);
    let src = user.artifact(source).await.expect("source artifact");
    assert_eq!(src.category, "kiln:source-package");
    assert_eq!(
        (src.data["name"].clone(), src.data["version"].clone(), src.data["architecture"].clone()),
        (json!("kiln-hello-fixture"), json!("1.0"), json!("any all"))
    );

    let sbuild = json!({"input": {"source_artifact": source}, "environment": env, "host_architecture": "amd64",
                        "build_components": ["any", "all"], "backend": "unshare"});
    let built = run_task(&user, "sbuild", sbuild, BUILD).await;
    assert_result(&user, &built, WorkResult::Success).await;
    let out = &built.output_data;
    assert_eq!(out["build_status"], json!("successful"), "{}", agent.log());
    assert_eq!(built.resolved_backend.as_deref(), Some("unshare"));
    assert!(out["provenance"]["sbuild"].as_str().is_some(), "{out:?}");
    let debs_id = out["binary_packages"][0].as_i64().expect("binary_packages");
    let debs = user.artifact(debs_id).await.expect("debs");
    assert_eq!(debs.category, "kiln:binary-packages");
    assert_eq!(file_names(&debs), ["kiln-hello-fixture-doc_1.0_all.deb", "kiln-hello-fixture_1.0_amd64.deb"]);
    let upload = user.artifact(out["upload"].as_i64().expect("upload")).await.expect("upload");
    assert_eq!(upload.category, "kiln:upload");
    assert_eq!(file_names(&upload), ["kiln-hello-fixture_1.0_amd64.buildinfo", "kiln-hello-fixture_1.0_amd64.changes"]);
    let log_id = out["build_log"].as_i64().expect("build_log");
    assert_eq!(user.artifact(log_id).await.expect("log").category, "kiln:package-build-log");
    assert!(file_text(&user, log_id, ".build").await.contains("Status: successful"));
    assert!(log_text(&user, built.id).await.contains("dpkg-buildpackage"), "the build streams into the task log");

    let lintian = run_task(
        &user,
        "lintian",
        json!({"input": {"source_artifact": source, "binary_artifacts": [debs_id]}, "environment": env}),
        BUILD,
    )
    .await;
    assert_result(&user, &lintian, WorkResult::Success).await;
    let summary = &lintian.output_data["summary"];
    assert_eq!(summary["error"], json!(0), "{summary}");
    assert!(summary["warning"].as_u64().is_some_and(|n| n >= 1), "the fixture has no manual page: {summary}");
    let report =
        file_text(&user, lintian.output_data["lintian"].as_i64().expect("lintian artifact"), "lintian.txt").await;
    assert!(report.contains("no-manual-page"), "{report}");
    let strict = run_task(
        &user,
        "lintian",
        json!({"input": {"binary_artifacts": [debs_id]}, "environment": env, "fail_on_severity": "warning"}),
        BUILD,
    )
    .await;
    assert_result(&user, &strict, WorkResult::Failure).await;

    let restrictions =
        run_task(&user, "extract_test_restrictions", json!({"input": {"source_artifact": source}}), BUILD).await;
    assert_result(&user, &restrictions, WorkResult::Success).await;
    assert_eq!(restrictions.output_data["restrictions"], json!(["allow-stderr"]));
    assert_eq!(restrictions.output_data["needs"], Value::Null);

    let autopkgtest = run_task(
        &user,
        "autopkgtest",
        json!({"input": {"source_artifact": source, "binary_artifacts": [debs_id]}, "environment": env,
               "backend": "auto"}),
        BUILD,
    )
    .await;
    assert_result(&user, &autopkgtest, WorkResult::Success).await;
    assert_eq!(
        autopkgtest.output_data["results"]["command1"]["status"],
        json!("PASS"),
        "{:?}",
        autopkgtest.output_data
    );
    let results = user.artifact(autopkgtest.output_data["autopkgtest"].as_i64().expect("artifact")).await.expect("a");
    assert_eq!(results.category, "kiln:autopkgtest");
    assert!(file_names(&results).iter().any(|n| n == "log"), "{:?}", file_names(&results));
}

#[tokio::test]
async fn a_broken_package_fails_with_a_readable_build_log() {
    require_privileged!();
    let c = Coordinator::start();
    let token = c.token("user", "bob");
    let user = c.client(&token);
    let _agent = Agent::start(&c, "builder-broken", &[]);
    let env = buildd_environment(&user).await;
    let fixture = fixture_dsc(Fixture::Broken);
    let source = import_dsc(&c, &token, &fixture.dsc);
    let sbuild = json!({"input": {"source_artifact": source}, "environment": env, "host_architecture": "amd64",
                        "build_components": ["any"], "backend": "auto"});
    let wr = run_task(&user, "sbuild", sbuild, BUILD).await;
    assert_result(&user, &wr, WorkResult::Failure).await;
    assert_eq!(wr.output_data["build_status"], json!("attempted"));
    assert_eq!(wr.output_data["binary_packages"], json!([]));
    let log = file_text(&user, wr.output_data["build_log"].as_i64().expect("build_log"), ".build").await;
    assert!(log.contains("hello.c") && log.contains("error: expected"), "the compiler's error is in the log: {log}");
    let streamed = log_text(&user, wr.id).await;
    assert!(streamed.contains("error: expected"), "and in the task log (kiln logs): {streamed}");
}

#[tokio::test]
async fn gnu_hello_from_the_archive_builds_across_an_agent_restart() {
    require_privileged!();
    let c = Coordinator::start();
    let token = c.token("user", "carol");
    let user = c.client(&token);
    let mut agent = Agent::start(&c, "builder-hello", &[]);
    let env = buildd_environment(&user).await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new("apt-get")
        .args(["source", "--download-only", "hello/bookworm"])
        .current_dir(dir.path())
        .output()
        .expect("apt-get");
    assert!(
        out.status.success(),
        "apt-get source hello (scripts/setup adds deb-src): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dsc = std::fs::read_dir(dir.path())
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "dsc"))
        .expect("a .dsc");
    let source = import_dsc(&c, &token, &dsc);
    let new = kiln_shared::work::NewWorkRequest {
        task_data: obj(json!({"input": {"source_artifact": source}, "environment": env,
                              "host_architecture": "amd64", "build_components": ["any"], "backend": "unshare"})),
        ..kiln_tests::work::request(kiln_shared::TaskType::Worker, "sbuild")
    };
    let wr = user.create_work_request(&new).await.expect("create");
    // Restart the agent while sbuild runs: the build goes on under its shim.
    wait_for(Duration::from_secs(300), || async {
        log_text(&user, wr.id).await.contains("Install package build dependencies").then_some(())
    })
    .await
    .expect("sbuild started");
    agent.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.restart();
    let wr = kiln_tests::debian::finished(&user, wr.id, BUILD).await;
    assert_result(&user, &wr, WorkResult::Success).await;
    assert_eq!(wr.attempt, 1, "the same attempt finished: {}", agent.log());
    let debs = user.artifact(wr.output_data["binary_packages"][0].as_i64().expect("debs")).await.expect("debs");
    assert!(file_names(&debs).iter().any(|n| n.starts_with("hello_") && n.ends_with("_amd64.deb")), "{debs:?}");
}

#[tokio::test]
async fn debian_tasks_go_only_to_agents_that_have_their_tools() {
    let c = Coordinator::start();
    let user = c.user("dave");
    let mut without = amd64_metadata();
    without.insert("sbuild:version".into(), json!(1));
    without.insert("sbuild:available".into(), json!(false));
    let lacking = enrolled_worker(&c, "no-sbuild", without.clone()).await;
    let declare = |category: &str| kiln_shared::artifact::NewArtifact {
        category: category.into(),
        data: obj(json!({"codename": "bookworm", "architecture": "amd64"})),
        files: Vec::new(),
        work_request: None,
    };
    let source = user.create_artifact(&declare("kiln:source-package")).await.expect("source").id;
    let env = user.create_artifact(&declare("kiln:system-tarball")).await.expect("env").id;
    let data = json!({"input": {"source_artifact": source}, "environment": env, "host_architecture": "amd64"});
    let new = kiln_shared::work::NewWorkRequest {
        task_data: obj(data),
        ..kiln_tests::work::request(kiln_shared::TaskType::Worker, "sbuild")
    };
    let wr = user.create_work_request(&new).await.expect("create");
    assert!(lacking.next(Duration::from_millis(500)).await.expect("next").is_none(), "sbuild:available is false");
    without.insert("sbuild:available".into(), json!(true));
    let equipped = enrolled_worker(&c, "with-sbuild", without).await;
    let got = equipped.next(Duration::from_secs(5)).await.expect("next").expect("assigned");
    assert_eq!(got.id, wr.id);
    let bad = kiln_shared::work::NewWorkRequest {
        task_data: obj(json!({"input": {"source_artifact": source}, "environment": env, "host_architecture": "amd64",
                              "backend": "qemu"})),
        ..kiln_tests::work::request(kiln_shared::TaskType::Worker, "sbuild")
    };
    let message = expect_api_error(user.create_work_request(&bad).await, 400, "invalid-task-data");
    assert!(message.contains("backend"), "{message}");
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[tokio::test]
async fn an_aborted_build_stops_every_process_of_its_tool() {
    require_privileged!();
    let c = Coordinator::start();
    let token = c.token("user", "erin");
    let user = c.client(&token);
    let agent = Agent::start(&c, "builder-abort", &[]);
    let env = buildd_environment(&user).await;
    let fixture = fixture_dsc(Fixture::Good);
    let source = import_dsc(&c, &token, &fixture.dsc);
    let new = kiln_shared::work::NewWorkRequest {
        task_data: obj(json!({"input": {"source_artifact": source}, "environment": env,
                              "host_architecture": "amd64", "build_components": ["any"]})),
        ..kiln_tests::work::request(kiln_shared::TaskType::Worker, "sbuild")
    };
    let wr = user.create_work_request(&new).await.expect("create");
    wait_for(Duration::from_secs(300), || async { log_text(&user, wr.id).await.contains("Unpacking").then_some(()) })
        .await
        .expect("sbuild is setting up its chroot");
    let task_dir = agent.data_dir.path().join("tasks").display().to_string();
    assert!(!processes_mentioning(&task_dir).is_empty(), "sbuild runs from the task directory");
    let scratch = scratch_dir_of(&agent.data_dir.path().join("tasks"), wr.id);
    let unpacked = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert!(unpacked > 0, "sbuild unpacks its chroot under the task's TMPDIR {}", scratch.display());
    user.work_request_action(wr.id, "abort").await.expect("abort");
    let wr = kiln_tests::debian::finished(&user, wr.id, Duration::from_secs(30)).await;
    assert_eq!(wr.status, kiln_shared::WorkStatus::Aborted);
    let left = wait_for(Duration::from_secs(15), || async {
        let left = processes_mentioning(&task_dir);
        left.is_empty().then_some(())
    })
    .await;
    assert!(left.is_some(), "processes left behind: {:?}\n{}", processes_mentioning(&task_dir), agent.log());
    // A killed sbuild cannot remove its unpacked chroot; the task's shim does.
    let gone = wait_for(Duration::from_secs(15), || async { (!scratch.exists()).then_some(()) }).await;
    assert!(gone.is_some(), "the aborted build's temporary files are left in {}\n{}", scratch.display(), agent.log());
}

/// The tool's `TMPDIR`, as the agent wrote it in the task's `task.json`
/// (`tasks/<id>-<attempt>/`).
fn scratch_dir_of(tasks: &std::path::Path, id: i64) -> std::path::PathBuf {
    let prefix = format!("{id}-");
    let task_dir = std::fs::read_dir(tasks)
        .expect("tasks directory")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no task directory for {id} in {}", tasks.display()));
    let spec = std::fs::read(task_dir.path().join("task.json")).expect("task.json");
    let spec: Value = serde_json::from_slice(&spec).expect("task.json is JSON");
    spec["host"]["tmp"].as_str().map(std::path::PathBuf::from).unwrap_or_else(|| panic!("no host.tmp in {spec}"))
}
