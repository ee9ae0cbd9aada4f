//! `debian_pipeline` end to end (issue 11) on a local coordinator with a
//! real `kiln-agent` worker (Debian's sbuild, lintian and autopkgtest on a
//! bookworm buildd tarball made by the `mmdebstrap` task) and a real
//! signing agent (gpg): the fixture source package is built, linted and
//! tested, its upload debsigned with a key the signing agent generated
//! (verified with gpg from the public key artifact only), and the approval
//! completed through the API. A broken fixture ends the workflow in
//! failure with the build log readable through `kiln logs`.
//!
//! Prints each stage's wall time (`STAGE …` lines; docs/benchmarks.md).

mod workflow_support;

use kiln_shared::client::Client;
use kiln_shared::work::{Completion, WorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::debian::{buildd_environment, fixture_dsc, import_dsc, Fixture};
use kiln_tests::work::{finished_within, request};
use kiln_tests::{obj, require_privileged, Coordinator};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use workflow_support::{children, submission, template};

/// A cold sbuild + lintian + autopkgtest of the fixture on 2 loaded cores.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Run `kiln ARGS` as the holder of `token`; its stdout and whether it succeeded.
fn kiln(c: &Coordinator, token: &str, args: &[&str]) -> (bool, String) {
    let out = kiln_tests::kiln_cli(c, token, args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tree(c: &Coordinator, token: &str, id: i64) -> String {
    kiln(c, token, &["workflow", "show", &id.to_string()]).1
}

async fn file(user: &Client, artifact: i64, path: &str) -> Vec<u8> {
    let resp = user.download_file(artifact, path).await.expect("download");
    resp.bytes().await.expect("bytes").to_vec()
}

/// Children by `workflow_data.step`.
async fn steps(user: &Client, wf: i64) -> Vec<(String, WorkRequest)> {
    let kids = children(user, wf).await;
    kids.into_iter().filter_map(|k| Some((k.workflow_data.get("step")?.as_str()?.to_owned(), k))).collect()
}

async fn step(user: &Client, wf: i64, name: &str) -> Option<WorkRequest> {
    steps(user, wf).await.into_iter().find(|(s, _)| s == name).map(|(_, k)| k)
}

/// Wait for the approval step (or the end of the workflow, which fails the
/// test with the tree and the agents' logs).
async fn approval_of(c: &Coordinator, token: &str, user: &Client, wf: i64, agents: &[&Agent]) -> WorkRequest {
    let deadline = Instant::now() + PIPELINE_TIMEOUT;
    loop {
        if let Some(a) = step(user, wf, "approval").await {
            return a;
        }
        let now = user.work_request(wf).await.expect("workflow");
        let logs: Vec<String> = agents.iter().map(|a| a.log()).collect();
        assert!(
            !now.status.is_final(),
            "the pipeline ended before its approval:\n{}\n{}",
            tree(c, token, wf),
            logs.join("\n")
        );
        assert!(Instant::now() < deadline, "no approval within {PIPELINE_TIMEOUT:?}:\n{}", tree(c, token, wf));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Wall time from the first start to the last completion of the steps
/// whose names start with `prefix`.
fn stage_seconds(all: &[(String, WorkRequest)], prefix: &str) -> Option<f64> {
    let nodes: Vec<&WorkRequest> = all.iter().filter(|(s, _)| s.starts_with(prefix)).map(|(_, k)| k).collect();
    let start = nodes.iter().filter_map(|k| k.started_at).min()?;
    let end = nodes.iter().filter_map(|k| k.completed_at).max()?;
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

async fn generate_key(admin: &Client, signer: &Agent) -> (String, Vec<u8>) {
    let mut gen = request(TaskType::Signing, "generate_key");
    gen.task_data = obj(json!({"purpose": "openpgp", "description": "pipeline uploads"}));
    let wr = admin.create_work_request(&gen).await.expect("generate_key");
    let done = finished_within(admin, wr.id, Duration::from_secs(120)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    let fpr = done.output_data["fingerprint"].as_str().expect("fingerprint").to_owned();
    let key = done.output_data["public_key_artifact"].as_i64().expect("public key artifact");
    let public = file(admin, key, &format!("{fpr}.asc")).await;
    (fpr, public)
}

/// `gpg --verify` of a clear-signed file with only `public` imported.
fn verify(public: &[u8], name: &str, signed: &[u8]) {
    let home = tempfile::tempdir().expect("gnupg home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let gpg = |args: &[&Path]| {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(home.path()).arg("--batch");
        cmd.args(args).output().expect("gpg")
    };
    let (key, file) = (home.path().join("key.asc"), home.path().join(name));
    std::fs::write(&key, public).expect("write key");
    std::fs::write(&file, signed).expect("write file");
    assert!(gpg(&[Path::new("--import"), &key]).status.success(), "import the public key");
    let out = gpg(&[Path::new("--verify"), &file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("Good signature"), "{name}: {err}");
    let _ = Command::new("gpgconf").arg("--homedir").arg(home.path()).args(["--kill", "gpg-agent"]).output();
}

/// Each node's start (seconds after the workflow was created) and run time.
fn print_timeline(wf: &WorkRequest, all: &[(String, WorkRequest)]) {
    let at = |t: chrono::DateTime<chrono::Utc>| (t - wf.created_at).num_milliseconds() as f64 / 1000.0;
    for (step, k) in all {
        if let (Some(start), Some(end)) = (k.started_at, k.completed_at) {
            println!(
                "NODE {step}: created +{:.1} s, started +{:.1} s, ran {:.1} s",
                at(k.created_at),
                at(start),
                at(end) - at(start)
            );
        }
    }
}

#[tokio::test]
async fn the_fixture_goes_from_source_to_a_signed_approved_upload() {
    require_privileged!();
    let c = Coordinator::start();
    let admin = c.admin();
    let token = c.token("user", "alice");
    let alice = c.client(&token);
    let builder = Agent::start(&c, "builder-01", &[]);
    let signer = Agent::start(&c, "signer-01", &["--role", "signing"]);
    let env = buildd_environment(&alice).await;
    let (fpr, public) = generate_key(&admin, &signer).await;
    let access = json!({"workflow_templates": ["release"]});
    let path = format!("/api/1/signing-keys/{fpr}/access");
    admin.send(admin.request(reqwest::Method::PUT, &path).json(&access)).await.expect("grant the template");
    let spec = json!({"task_name": "debian_pipeline", "allowed": {"autopkgtest_backend": ["unshare"]},
                      "task_data": {"vendor": "debian", "codename": "bookworm"}});
    admin.put_workflow_template("release", &template(spec)).await.expect("template");
    let fixture = fixture_dsc(Fixture::Good);
    let source = import_dsc(&c, &token, &fixture.dsc);

    let started = Instant::now();
    let data = json!({"source_artifact": source, "architectures": ["amd64", "all"], "enable_lintian": true,
                      "enable_autopkgtest": true, "signing_key": fpr, "require_approval": true});
    let (ok, out) = kiln(&c, &token, &["workflow", "start", "release", "--data", &data.to_string(), "--json"]);
    assert!(ok, "kiln workflow start: {out}");
    let wf = serde_json::from_str::<Value>(&out).expect("json")["id"].as_i64().expect("workflow id");
    let approval = approval_of(&c, &token, &alice, wf, &[&builder, &signer]).await;
    let until_approval = started.elapsed();
    let shown = tree(&c, &token, wf);
    println!("{shown}");
    assert!(shown.contains("needs input"), "{shown}");

    let all = steps(&alice, wf).await;
    let by = |name: &str| all.iter().find(|(s, _)| s == name).map(|(_, k)| k.clone());
    for (s, k) in &all {
        assert!(k.workflow_data["display_name"].is_string(), "{s} has a display name");
        if s != "approval" {
            assert_eq!(k.result, Some(WorkResult::Success), "{s}: {:?}\n{shown}", k.output_data);
        }
    }
    // .debs built.
    let build = by("sbuild-amd64").expect("an amd64 build");
    assert_eq!(build.task_data["environment"], json!(env));
    let debs = build.output_data["binary_packages"][0].as_i64().expect("binary packages");
    let debs = alice.artifact(debs).await.expect("binary packages");
    assert!(debs.files.iter().any(|f| f.path.ends_with(".deb")), "{debs:?}");
    // lintian and autopkgtest results.
    let lintian = by("lintian").expect("lintian");
    let report = alice.artifact(lintian.output_data["lintian"].as_i64().expect("lintian artifact")).await.expect("a");
    assert_eq!(report.category, "kiln:lintian");
    let tests = by("autopkgtest-amd64").expect("autopkgtest");
    assert_eq!(tests.task_data["backend"], json!("unshare"), "auto resolved to unshare");
    let results = tests.output_data["results"].as_object().expect("results");
    assert!(!results.is_empty() && results.values().all(|r| r["status"] == json!("PASS")), "{results:?}");
    // The .changes signed with the signing agent's key.
    let signed: Vec<WorkRequest> =
        all.iter().filter(|(s, _)| s.starts_with("debsign-")).map(|(_, k)| k.clone()).collect();
    assert!(!signed.is_empty());
    for d in &signed {
        assert_eq!(d.worker.as_deref(), Some("signer-01"));
        let upload = alice.artifact(d.output_data["signed_upload"].as_i64().expect("signed upload")).await.expect("a");
        let changes = upload.data["changes"].as_str().expect("changes file name").to_owned();
        verify(&public, &changes, &file(&alice, upload.id, &changes).await);
    }
    // The approval, through the API.
    let yes = Completion { result: WorkResult::Success, attempt: None, output_data: None };
    alice.complete(approval.id, &yes).await.expect("approve");
    let done = finished_within(&alice, wf, Duration::from_secs(30)).await;
    assert_eq!(
        (done.status, done.result),
        (WorkStatus::Completed, Some(WorkResult::Success)),
        "{}",
        tree(&c, &token, wf)
    );

    let all = steps(&alice, wf).await;
    print_timeline(&done, &all);
    for (stage, prefix) in
        [("build", "sbuild-"), ("lintian", "lintian"), ("autopkgtest", "autopkgtest-"), ("debsign", "debsign-")]
    {
        if let Some(s) = stage_seconds(&all, prefix) {
            println!("STAGE {stage}: {s:.1} s");
        }
    }
    println!("STAGE submission to approval: {:.1} s", until_approval.as_secs_f64());
}

#[tokio::test]
async fn a_broken_fixture_ends_the_pipeline_in_failure_with_its_build_log() {
    require_privileged!();
    let c = Coordinator::start();
    let admin = c.admin();
    let token = c.token("user", "alice");
    let alice = c.client(&token);
    let builder = Agent::start(&c, "builder-01", &[]);
    buildd_environment(&alice).await;
    admin.put_workflow_template("pipeline", &template(json!({"task_name": "debian_pipeline"}))).await.expect("t");
    let fixture = fixture_dsc(Fixture::Broken);
    let source = import_dsc(&c, &token, &fixture.dsc);
    let data = json!({"source_artifact": source, "vendor": "debian", "codename": "bookworm",
                      "architectures": ["amd64"], "require_approval": true});
    let wf = alice.create_workflow(&submission("pipeline", data)).await.expect("start");
    let done = finished_within(&alice, wf.id, PIPELINE_TIMEOUT).await;
    let shown = tree(&c, &token, wf.id);
    assert_eq!(
        (done.status, done.result),
        (WorkStatus::Completed, Some(WorkResult::Failure)),
        "{shown}\n{}",
        builder.log()
    );
    let build = step(&alice, wf.id, "sbuild-amd64").await.expect("the build");
    assert_eq!(build.result, Some(WorkResult::Failure), "a package that fails to build is a failure, not an error");
    assert!(build.output_data["build_log"].as_i64().is_some(), "{:?}", build.output_data);
    assert!(step(&alice, wf.id, "approval").await.is_none(), "nothing after a failed build");
    assert!(shown.contains(&format!("kiln logs {}", build.id)), "{shown}");
    let (ok, log) = kiln(&c, &token, &["logs", &build.id.to_string()]);
    assert!(ok && log.to_lowercase().contains("error"), "the build log through kiln logs:\n{log}");
}
