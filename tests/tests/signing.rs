//! Signing agents end to end (issue 8): a real `kiln-agent --role signing`
//! with real gpg generates a key and signs an artifact; the signature
//! verifies with only the public key artifact; worker agents never get
//! signing tasks and signing agents never get worker tasks; no private key
//! material reaches the coordinator.

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::Client;
use kiln_shared::{TaskType, WorkResult};
use kiln_tests::agent::Agent;
use kiln_tests::work::{finished_within, noop, request};
use kiln_tests::{expect_api_error, obj, sha256_hex, Coordinator};
use reqwest::Method;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

async fn upload(user: &Client, category: &str, files: &[(&str, &[u8])]) -> i64 {
    let specs = files
        .iter()
        .map(|(p, b)| FileSpec { path: (*p).to_owned(), size: b.len() as u64, sha256: sha256_hex(b) })
        .collect();
    let new = NewArtifact { category: category.into(), data: Default::default(), files: specs, work_request: None };
    let a = user.create_artifact(&new).await.expect("create artifact");
    for (p, b) in files {
        user.upload_file(a.id, p, b.to_vec()).await.expect("upload");
    }
    a.id
}

async fn set_access(admin: &Client, fpr: &str, access: Value) {
    let path = format!("/api/1/signing-keys/{fpr}/access");
    admin.send(admin.request(Method::PUT, &path).json(&access)).await.expect("set access");
}

async fn file(user: &Client, artifact: i64, path: &str) -> Vec<u8> {
    let resp = user.download_file(artifact, path).await.expect("download");
    resp.bytes().await.expect("bytes").to_vec()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test]
async fn a_signing_agent_generates_a_key_and_signs_with_it() {
    let c = Coordinator::start();
    let (admin, alice, bob) = (c.admin(), c.user("alice"), c.user("bob"));
    let signer = Agent::start(&c, "signer-01", &["--role", "signing"]);
    let builder = Agent::start(&c, "builder-01", &[]);

    let mut gen = request(TaskType::Signing, "generate_key");
    gen.task_data = obj(json!({"purpose": "openpgp", "description": "test archive"}));
    expect_api_error(alice.create_work_request(&gen).await, 403, "forbidden");
    let wr = admin.create_work_request(&gen).await.expect("create generate_key");
    let done = finished_within(&admin, wr.id, Duration::from_secs(90)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    assert_eq!(done.worker.as_deref(), Some("signer-01"));
    let fpr = done.output_data["fingerprint"].as_str().expect("fingerprint").to_owned();
    let key_artifact = done.output_data["public_key_artifact"].as_i64().expect("public key artifact");
    let key = alice.artifact(key_artifact).await.expect("key artifact");
    assert_eq!(key.category, "kiln:signing-key");
    assert_eq!(key.data["fingerprint"], Value::from(fpr.clone()));
    let public = file(&alice, key_artifact, &format!("{fpr}.asc")).await;
    assert!(String::from_utf8_lossy(&public).contains("BEGIN PGP PUBLIC KEY BLOCK"));

    let keys = signer.data_dir.path().join("keys");
    let mode = std::fs::metadata(&keys).expect("key store").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the key store is private");
    assert!(keys.join(&fpr).is_dir(), "one GnuPG home per key");

    let payload: &[u8] = b"Format: 3.0 (quilt)\nSource: hello\n";
    let unsigned = upload(&alice, "kiln:upload", &[("hello_1.0.dsc", payload), ("sub/notes.txt", b"n\n")]).await;
    let mut sign = request(TaskType::Signing, "sign");
    sign.task_data = obj(json!({"key": fpr, "unsigned": unsigned}));
    expect_api_error(alice.create_work_request(&sign).await, 403, "forbidden");
    set_access(&admin, &fpr, json!({"users": ["alice"]})).await;
    expect_api_error(bob.create_work_request(&sign).await, 403, "forbidden");
    let wr = alice.create_work_request(&sign).await.expect("create sign");
    let done = finished_within(&alice, wr.id, Duration::from_secs(90)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    assert_eq!(done.worker.as_deref(), Some("signer-01"));
    let sig_artifact = done.output_data["signature_artifact"].as_i64().expect("signature artifact");
    assert_eq!(alice.artifact(sig_artifact).await.expect("sig").category, "kiln:signature");
    assert_eq!(done.output_data["signed"][0]["sha256"], Value::from(sha256_hex(payload)));

    // Verify with nothing but the public key artifact.
    let home = tempfile::tempdir().expect("gnupg home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (pubfile, data, sig) = (home.path().join("k.asc"), home.path().join("x.dsc"), home.path().join("x.dsc.asc"));
    std::fs::write(&pubfile, &public).expect("write key");
    std::fs::write(&data, payload).expect("write data");
    std::fs::write(&sig, file(&alice, sig_artifact, "hello_1.0.dsc.asc").await).expect("write sig");
    let gpg = |args: &[&Path]| {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(home.path()).arg("--batch");
        cmd.args(args).output().expect("gpg")
    };
    let import = gpg(&[Path::new("--import"), &pubfile]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let verify = gpg(&[Path::new("--verify"), &sig, &data]);
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && err.contains("Good signature"), "{err}");
    std::fs::write(&data, b"tampered").expect("tamper");
    assert!(!gpg(&[Path::new("--verify"), &sig, &data]).status.success(), "a changed file fails to verify");
    let _ = Command::new("gpgconf").arg("--homedir").arg(home.path()).args(["--kill", "gpg-agent"]).output();

    let audit = std::fs::read_to_string(signer.data_dir.path().join("audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().count(), 2, "{audit}");
    assert!(audit.contains(&sha256_hex(payload)) && audit.contains(&fpr) && audit.contains("alice"), "{audit}");

    // Worker work goes to the worker agent only.
    let wr = alice.create_work_request(&noop(&[])).await.expect("noop");
    let done = finished_within(&alice, wr.id, Duration::from_secs(60)).await;
    assert_eq!(done.worker.as_deref(), Some("builder-01"), "{}", builder.log());
    let md = admin.worker("signer-01").await.expect("signer").metadata;
    assert_eq!(md.get("system:worker_role").and_then(Value::as_str), Some("signing"), "{md:?}");
    assert!(md.contains_key("sign:version") && !md.contains_key("noop:version"), "{md:?}");
    assert!(!md.contains_key("command:version") && !md.keys().any(|k| k.starts_with("executor:")), "{md:?}");

    let listing = admin.send(admin.request(Method::GET, "/api/1/signing-keys")).await.expect("list keys");
    let listing = listing.text().await.expect("text");
    assert!(listing.contains(&fpr) && listing.contains("alice") && !listing.contains("PRIVATE KEY"), "{listing}");
    let allow = c.admin_command(&["key", "allow", &fpr, "--user", "carol", "--template", "release"]);
    assert!(allow.status.success(), "{}", String::from_utf8_lossy(&allow.stderr));
    let list = c.admin_command(&["key", "list"]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(list.contains(&fpr) && list.contains("alice,carol / release"), "{list}");
    let revoke = c.admin_command(&["key", "revoke", &fpr]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    expect_api_error(alice.create_work_request(&sign).await, 403, "forbidden");

    assert_eq!(files_containing(c.data_dir.path(), b"PRIVATE KEY"), Vec::<String>::new());
    assert!(!String::from_utf8_lossy(&public).contains("PRIVATE KEY"), "only the public key is uploaded");
    let secret = keys.join(&fpr).join("private-keys-v1.d");
    assert!(std::fs::read_dir(&secret).expect("private keys stay on the signing host").next().is_some());
}

#[tokio::test]
async fn a_worker_agent_never_gets_a_signing_task() {
    let c = Coordinator::start();
    let alice = c.user("alice");
    let _builder = Agent::start(&c, "builder-01", &[]);
    let mut gen = request(TaskType::Signing, "generate_key");
    gen.task_data = obj(json!({"purpose": "openpgp"}));
    let wr = c.admin().create_work_request(&gen).await.expect("create");
    let sentinel = alice.create_work_request(&noop(&[])).await.expect("noop");
    finished_within(&alice, sentinel.id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = alice.work_request(wr.id).await.expect("get");
    assert_eq!(still.worker, None, "a worker agent took a signing task: {still:?}");
    assert!(!still.status.is_final());
}

#[test]
fn a_signing_agent_refuses_plain_http_to_a_remote_coordinator() {
    let out = Command::new(kiln_tests::binary("kiln-agent"))
        .args(["--coordinator", "http://kiln.example:8080", "--role", "signing", "validate-config"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"), "{}", String::from_utf8_lossy(&out.stderr));
    let ok = Command::new(kiln_tests::binary("kiln-agent"))
        .args(["--coordinator", "http://127.0.0.1:1", "--role", "signing", "validate-config"])
        .output()
        .expect("run");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[tokio::test]
async fn debsign_signs_an_upload_in_place() {
    let c = Coordinator::start();
    let (admin, alice) = (c.admin(), c.user("alice"));
    let signer = Agent::start(&c, "signer-01", &["--role", "signing"]);
    let mut gen = request(TaskType::Signing, "generate_key");
    gen.task_data = obj(json!({"purpose": "openpgp", "description": "uploads"}));
    let wr = admin.create_work_request(&gen).await.expect("create generate_key");
    let done = finished_within(&admin, wr.id, Duration::from_secs(90)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    let fpr = done.output_data["fingerprint"].as_str().expect("fingerprint").to_owned();
    let public =
        file(&admin, done.output_data["public_key_artifact"].as_i64().expect("key"), &format!("{fpr}.asc")).await;
    set_access(&admin, &fpr, json!({"users": ["alice"]})).await;

    let dsc: &[u8] = b"Format: 3.0 (quilt)\nSource: hello\nVersion: 1.0\n";
    let tarball: &[u8] = b"not really a tarball\n";
    let changes = format!(
        "Format: 1.8\nSource: hello\nChecksums-Sha256:\n {} {} hello_1.0.dsc\n {} {} hello_1.0.tar.xz\n\
         Files:\n 00 {} devel optional hello_1.0.dsc\n 11 {} devel optional hello_1.0.tar.xz\n",
        sha256_hex(dsc),
        dsc.len(),
        sha256_hex(tarball),
        tarball.len(),
        dsc.len(),
        tarball.len()
    );
    let files: [(&str, &[u8]); 3] =
        [("hello_1.0.dsc", dsc), ("hello_1.0.tar.xz", tarball), ("hello_1.0_source.changes", changes.as_bytes())];
    let unsigned = upload(&alice, "kiln:upload", &files).await;
    let mut req = request(TaskType::Signing, "debsign");
    req.task_data = obj(json!({"key": fpr, "unsigned": unsigned}));
    let wr = alice.create_work_request(&req).await.expect("create debsign");
    let done = finished_within(&alice, wr.id, Duration::from_secs(90)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    let signed = done.output_data["signed_upload"].as_i64().expect("signed upload");
    assert_eq!(alice.artifact(signed).await.expect("upload").category, "kiln:upload");

    let home = tempfile::tempdir().expect("gnupg home");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keyfile = home.path().join("k.asc");
    std::fs::write(&keyfile, &public).expect("write key");
    let gpg = |args: &[&Path]| {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(home.path()).arg("--batch");
        cmd.args(args).output().expect("gpg")
    };
    assert!(gpg(&[Path::new("--import"), &keyfile]).status.success());
    let new_dsc = file(&alice, signed, "hello_1.0.dsc").await;
    let new_changes = String::from_utf8(file(&alice, signed, "hello_1.0_source.changes").await).expect("utf-8");
    assert_eq!(file(&alice, signed, "hello_1.0.tar.xz").await, tarball, "other files are kept as they are");
    assert!(
        new_changes.contains(&format!(" {} {} hello_1.0.dsc", sha256_hex(&new_dsc), new_dsc.len())),
        "{new_changes}"
    );
    for (name, bytes) in [("d.dsc", new_dsc), ("c.changes", new_changes.into_bytes())] {
        let path = home.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let verify = gpg(&[Path::new("--verify"), &path]);
        assert!(verify.status.success(), "{name}: {}", String::from_utf8_lossy(&verify.stderr));
    }
    let _ = Command::new("gpgconf").arg("--homedir").arg(home.path()).args(["--kill", "gpg-agent"]).output();
    let audit = std::fs::read_to_string(signer.data_dir.path().join("audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().count(), 2, "{audit}");
}

#[tokio::test]
async fn workflows_from_a_listed_template_may_sign() {
    let c = Coordinator::start();
    let (admin, bob) = (c.admin(), c.user("bob"));
    let signer = Agent::start(&c, "signer-01", &["--role", "signing"]);
    let mut gen = request(TaskType::Signing, "generate_key");
    gen.task_data = obj(json!({"purpose": "openpgp"}));
    let wr = admin.create_work_request(&gen).await.expect("create generate_key");
    let done = finished_within(&admin, wr.id, Duration::from_secs(90)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, signer.log());
    let fpr = done.output_data["fingerprint"].as_str().expect("fingerprint").to_owned();
    set_access(&admin, &fpr, json!({"workflow_templates": ["release"]})).await;
    for name in ["release", "other"] {
        let spec =
            json!({"task_name": "matrix", "task_data": {"task": "noop", "targets": [{"architecture": "amd64"}]}});
        let spec = serde_json::from_value(spec).expect("spec");
        admin.put_workflow_template(name, &spec).await.expect("template");
    }
    let unsigned = upload(&bob, "kiln:upload", &[("a.dsc", b"a\n")]).await;
    let sign_in = |parent: i64| {
        let mut sign = request(TaskType::Signing, "sign");
        sign.task_data = obj(json!({"key": fpr, "unsigned": unsigned}));
        sign.parent = Some(parent);
        sign
    };
    let submit = |template: &str| kiln_shared::workflow::NewWorkflow {
        template: template.into(),
        task_data: Default::default(),
        priority: 0,
    };
    let other = bob.create_workflow(&submit("other")).await.expect("other workflow");
    expect_api_error(bob.create_work_request(&sign_in(other.id)).await, 403, "forbidden");
    let release = bob.create_workflow(&submit("release")).await.expect("release workflow");
    bob.create_work_request(&sign_in(release.id)).await.expect("a release workflow signs");
    let mut alone = sign_in(release.id);
    alone.parent = None;
    expect_api_error(bob.create_work_request(&alone).await, 403, "forbidden");
}
