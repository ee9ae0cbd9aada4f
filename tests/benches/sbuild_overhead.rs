//! What Kiln adds to a real package build: GNU hello (`apt-get source
//! hello/bookworm`) built by bare `sbuild --chroot-mode=unshare` on the
//! environment tarball, and by Kiln's `sbuild` task on the same tarball
//! (submission to completed result: scheduling, input download, the shim,
//! log shipping and artifact uploads included). One run of each, bare
//! first, then Kiln, then bare again so that a warm or cold mirror does not
//! favour either side; the ratio is Kiln over the mean of the bare runs.
//! The goal is at most 5 % overhead.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench sbuild_overhead`

use kiln_shared::WorkResult;
use kiln_tests::agent::Agent;
use kiln_tests::debian::{buildd_environment, finished, import_dsc};
use kiln_tests::{obj, Coordinator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn hello_source(dir: &Path) -> PathBuf {
    let out = Command::new("apt-get")
        .args(["source", "--download-only", "hello/bookworm"])
        .current_dir(dir)
        .output()
        .expect("apt-get source");
    assert!(out.status.success(), "apt-get source hello: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_dir(dir)
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "dsc"))
        .expect("a .dsc")
}

fn bare_sbuild(tarball: &Path, dsc: &Path) -> Duration {
    let out = tempfile::tempdir().expect("tmp");
    let home = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let status = Command::new("sbuild")
        .args(["--verbose", "--chroot-mode=unshare", "--dist=bookworm", "--arch=amd64", "--arch-any", "--no-arch-all"])
        .args(["--no-run-lintian", "--no-run-autopkgtest", "--no-run-piuparts", "--no-source-only-changes"])
        .arg(format!("--chroot={}", tarball.display()))
        .arg(format!("--build-dir={}", out.path().display()))
        .arg(dsc)
        .env("HOME", home.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sbuild");
    let took = started.elapsed();
    assert!(status.success(), "bare sbuild failed");
    took
}

#[tokio::main]
async fn main() {
    let c = Coordinator::start();
    let token = c.token("user", "bench");
    let user = c.client(&token);
    let _agent = Agent::start(&c, "bench-sbuild", &[]);
    let env = buildd_environment(&user).await;
    let src = tempfile::tempdir().expect("tmp");
    let dsc = hello_source(src.path());
    let source = import_dsc(&c, &token, &dsc);
    // The same tarball the agent uses: the cached environment's file.
    let tarball_dir = tempfile::tempdir().expect("tmp");
    let tarball = tarball_dir.path().join("system.tar.zst");
    let bytes = user.download_file(env, "system.tar.zst").await.expect("download").bytes().await.expect("bytes");
    std::fs::write(&tarball, &bytes).expect("write");

    let bare_first = bare_sbuild(&tarball, &dsc);
    println!("bare sbuild (1):   {:7.2} s", bare_first.as_secs_f64());
    let new = kiln_shared::work::NewWorkRequest {
        task_data: obj(json!({"input": {"source_artifact": source}, "environment": env,
                              "host_architecture": "amd64", "build_components": ["any"], "backend": "unshare"})),
        ..kiln_tests::work::request(kiln_shared::TaskType::Worker, "sbuild")
    };
    let started = Instant::now();
    let wr = user.create_work_request(&new).await.expect("create");
    let wr = finished(&user, wr.id, Duration::from_secs(1800)).await;
    let kiln = started.elapsed();
    assert_eq!(wr.result, Some(WorkResult::Success), "{:?}", wr.output_data);
    println!(
        "Kiln sbuild task:  {:7.2} s (submission to result, first use of the environment on this agent)",
        kiln.as_secs_f64()
    );
    let bare_second = bare_sbuild(&tarball, &dsc);
    println!("bare sbuild (2):   {:7.2} s", bare_second.as_secs_f64());
    let bare = (bare_first + bare_second).as_secs_f64() / 2.0;
    println!(
        "Kiln / bare:       {:7.3}x ({:+.1} %)",
        kiln.as_secs_f64() / bare,
        (kiln.as_secs_f64() / bare - 1.0) * 100.0
    );
}
