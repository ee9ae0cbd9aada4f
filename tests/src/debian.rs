//! Debian fixtures for end-to-end tests: the `kiln-hello-fixture` source
//! package (tests/fixtures/, a C program with an autopkgtest, built without
//! debhelper) made with `dpkg-source -b`, imported with `kiln artifact
//! import-dsc`; and a bookworm `buildd` environment made by Kiln's own
//! `mmdebstrap` task, cached between runs keyed by its inputs.

use crate::{obj, wait_for, Coordinator};
use kiln_shared::client::Client;
use kiln_shared::work::{NewWorkRequest, WorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde_json::{json, Value};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Which fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Builds, lints and passes its autopkgtest.
    Good,
    /// `hello.c` does not compile: sbuild fails with a readable log.
    Broken,
}

/// A source package's files, in a directory that lives as long as this.
pub struct SourcePackage {
    pub dir: tempfile::TempDir,
    pub dsc: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The fixture as a source package (.dsc + .tar.xz) built by `dpkg-source -b`.
pub fn fixture_dsc(kind: Fixture) -> SourcePackage {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kiln-hello-fixture");
    let dir = tempfile::Builder::new().prefix("kiln-fixture-").tempdir().expect("tmp");
    let tree = dir.path().join("kiln-hello-fixture");
    copy_tree(&src, &tree);
    if kind == Fixture::Broken {
        let c = tree.join("hello.c");
        let text = std::fs::read_to_string(&c).expect("read hello.c");
        std::fs::write(&c, text.replace("return 0;", "return 0 /* broken on purpose: no semicolon */"))
            .expect("break hello.c");
    }
    let out = Command::new("dpkg-source")
        .args(["-b", "kiln-hello-fixture"])
        .current_dir(dir.path())
        .output()
        .expect("run dpkg-source (scripts/setup installs dpkg-dev)");
    assert!(out.status.success(), "dpkg-source -b failed: {}", String::from_utf8_lossy(&out.stderr));
    let dsc = dir.path().join("kiln-hello-fixture_1.0.dsc");
    assert!(dsc.is_file(), "dpkg-source made no .dsc");
    SourcePackage { dir, dsc }
}

/// `kiln artifact import-dsc --json` as `token`; the artifact id.
pub fn import_dsc(c: &Coordinator, token: &str, dsc: &Path) -> i64 {
    let dsc = dsc.to_str().expect("a UTF-8 path");
    let out = crate::kiln_cli(c, token, &["--json", "artifact", "import-dsc", dsc]);
    assert!(out.status.success(), "import-dsc failed: {}", String::from_utf8_lossy(&out.stderr));
    let artifact: Value = serde_json::from_slice(&out.stdout).expect("import-dsc --json prints the artifact");
    artifact["id"].as_i64().expect("artifact id")
}

/// The `mmdebstrap` task data of the shared test environment.
pub fn buildd_task_data() -> Value {
    json!({
        "bootstrap_options": {"architecture": "amd64", "variant": "buildd"},
        "bootstrap_repositories": [
            {"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "components": ["main"]}
        ],
    })
}

/// Wait for `id` to end (panics after `within`).
pub async fn finished(user: &Client, id: i64, within: Duration) -> WorkRequest {
    wait_for(within, || async {
        let wr = user.work_request(id).await.ok()?;
        wr.status.is_final().then_some(wr)
    })
    .await
    .unwrap_or_else(|| panic!("work request {id} did not finish within {within:?}"))
}

/// Run a worker task as `user` and wait for it.
pub async fn run_task(user: &Client, name: &str, data: Value, within: Duration) -> WorkRequest {
    let new = NewWorkRequest { task_data: obj(data), ..crate::work::request(TaskType::Worker, name) };
    let wr = user.create_work_request(&new).await.unwrap_or_else(|e| panic!("create {name}: {e}"));
    finished(user, wr.id, within).await
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Where the environment built from `data` is cached: keyed by the task
/// data, the mmdebstrap version and the week (the archive moves on; sbuild
/// and autopkgtest update the environment's packages anyway).
fn cache_entry(data: &Value) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let week = secs / (7 * 86_400);
    let key = format!("{data}|{}|week {week}", package_version("mmdebstrap"));
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    crate::images::cache_dir().join(format!("mmdebstrap-{}", &digest[..16]))
}

/// A `kiln:system-tarball` environment made by the `mmdebstrap` task from
/// `data` on an agent of `c`; a cached copy is uploaded instead when one
/// exists (same inputs, same day). The artifact id.
pub async fn environment(user: &Client, data: Value) -> i64 {
    // Tests of one binary run in parallel: build each environment once.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = BUILDING.lock().await;
    let entry = cache_entry(&data);
    let (tarball, meta) = (entry.join("system.tar.zst"), entry.join("data.json"));
    if tarball.is_file() && meta.is_file() {
        let data: Value = serde_json::from_slice(&std::fs::read(&meta).expect("read")).expect("cached data");
        return upload_tarball(user, &tarball, data).await;
    }
    let wr = run_task(user, "mmdebstrap", data, Duration::from_secs(900)).await;
    assert_result(user, &wr, WorkResult::Success).await;
    let id = wr.output_data["system_tarball"].as_i64().expect("output_data.system_tarball");
    let artifact = user.artifact(id).await.expect("artifact");
    std::fs::create_dir_all(&entry).expect("cache dir");
    let partial = entry.join(format!("system.tar.zst.partial-{}", std::process::id()));
    let bytes = user.download_file(id, "system.tar.zst").await.expect("download").bytes().await.expect("bytes");
    std::fs::write(&partial, &bytes).expect("write");
    std::fs::write(&meta, serde_json::to_vec(&Value::Object(artifact.data)).expect("json")).expect("write data");
    std::fs::rename(&partial, &tarball).expect("publish");
    prune_stale_environments(&entry);
    id
}

/// Environments of earlier weeks are never used again: free their disk
/// (CI hosts are not large). Best effort.
fn prune_stale_environments(keep: &Path) {
    let week = Duration::from_secs(8 * 86_400);
    let Ok(entries) = std::fs::read_dir(crate::images::cache_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()) > Some(week);
        if path != keep && entry.file_name().to_string_lossy().starts_with("mmdebstrap-") && stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

async fn upload_tarball(user: &Client, tarball: &Path, data: Value) -> i64 {
    let bytes = std::fs::read(tarball).expect("read the tarball");
    let new = kiln_shared::artifact::NewArtifact {
        category: "kiln:system-tarball".into(),
        data: obj(data),
        files: vec![kiln_shared::artifact::FileSpec {
            path: "system.tar.zst".into(),
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        }],
        work_request: None,
    };
    let artifact = user.create_artifact(&new).await.expect("create the environment artifact");
    user.upload_file(artifact.id, "system.tar.zst", bytes).await.expect("upload the environment");
    artifact.id
}

/// The bookworm `buildd` environment every Debian test builds in.
pub async fn buildd_environment(user: &Client) -> i64 {
    environment(user, buildd_task_data()).await
}

/// Is `wr` done with `result`? Its output and the end of its log otherwise.
pub async fn assert_result(user: &Client, wr: &WorkRequest, result: WorkResult) {
    if (wr.status, wr.result) == (WorkStatus::Completed, Some(result)) {
        return;
    }
    let log = crate::work::log_text(user, wr.id).await;
    let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    panic!(
        "{} {} ended {:?}/{:?}, expected {result:?}: {}\n--- end of its log ---\n{}",
        wr.task_name,
        wr.id,
        wr.status,
        wr.result,
        serde_json::to_string_pretty(&wr.output_data).unwrap_or_default(),
        tail.join("\n")
    );
}
