//! The agent as an operator meets it: configuration, registration while
//! disabled, the writable layer's quota, and network only when allowed.

use kiln_shared::WorkResult;
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::work::{finished_within, log_text, shell_command as command};
use kiln_tests::{binary, require_privileged, wait_for, Coordinator};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[test]
fn validate_config_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("agent.toml");
    std::fs::write(&good, "coordinator = \"http://127.0.0.1:1\"\nname = \"b1\"\n[image_cache]\nmax_images = 3\n")
        .expect("write");
    let ok =
        Command::new(binary("kiln-agent")).arg("--config").arg(&good).arg("validate-config").output().expect("run");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "coordinator = \"http://127.0.0.1:1\"\n[image_cache]\nmax_imags = 3\n").expect("write");
    let out =
        Command::new(binary("kiln-agent")).arg("--config").arg(&bad).arg("validate-config").output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_imags") && err.contains("bad.toml"), "{err}");
    let flags = Command::new(binary("kiln-agent"))
        .args(["--coordinator", "ftp://nope", "validate-config"])
        .output()
        .expect("run");
    assert!(!flags.status.success(), "flags are validated too");
    assert!(String::from_utf8_lossy(&flags.stderr).contains("ftp://nope"));
}

#[tokio::test]
async fn a_disabled_agent_waits_then_works_once_enabled() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let data_dir = tempfile::tempdir().expect("tmp");
    let log_path = data_dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(binary("kiln-agent"))
        .args(["--coordinator", &c.url, "--name", "newcomer", "--data-dir"])
        .arg(data_dir.path())
        .arg("run")
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let wr = user.create_work_request(&kiln_tests::work::noop(&[])).await.expect("noop");
    let waiting = wait_for(Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.contains("disabled").then_some(text)
    })
    .await;
    let token_mode = std::fs::metadata(data_dir.path().join("token"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert!(waiting.is_some(), "the agent says it waits for an admin");
    assert_eq!(token_mode.ok(), Some(0o600), "its token is private");
    assert_eq!(user.work_request(wr.id).await.expect("get").status, kiln_shared::WorkStatus::Pending);
    let out = c.admin_command(&["worker", "enable", "newcomer"]);
    assert!(out.status.success());
    let done = wait_for(Duration::from_secs(40), || async {
        let wr = user.work_request(wr.id).await.ok()?;
        wr.status.is_final().then_some(wr)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(done.expect("runs once enabled").result, Some(WorkResult::Success));
}

#[tokio::test]
async fn the_writable_layer_has_a_quota() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let _agent = Agent::start(&c, "quota", &["--disk-limit", "32MiB"]);
    let fits = user
        .create_work_request(&command(env, "dd if=/dev/zero of=/var/fits bs=1M count=8 && echo wrote-8", json!({})))
        .await
        .expect("create");
    let fits = finished_within(&user, fits.id, Duration::from_secs(60)).await;
    assert_eq!(fits.result, Some(WorkResult::Success), "{}", log_text(&user, fits.id).await);
    let too_big = user
        .create_work_request(&command(env, "dd if=/dev/zero of=/var/big bs=1M count=64", json!({})))
        .await
        .expect("create");
    let too_big = finished_within(&user, too_big.id, Duration::from_secs(60)).await;
    let log = log_text(&user, too_big.id).await;
    assert_eq!(too_big.result, Some(WorkResult::Failure), "{log}");
    assert!(log.contains("No space left"), "{log}");
}

#[tokio::test]
async fn network_only_when_the_task_asks_and_the_agent_allows() {
    require_privileged!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let count = "echo ifaces=$(tail -n +3 /proc/net/dev | wc -l)";
    let host_ifaces = std::fs::read_to_string("/proc/net/dev").expect("host").lines().skip(2).count();
    assert!(host_ifaces > 1, "this test needs a host with an interface besides lo");
    {
        let _strict = Agent::start(&c, "strict", &[]);
        let asked = user.create_work_request(&command(env, count, json!({"network": true}))).await.expect("create");
        let asked = finished_within(&user, asked.id, Duration::from_secs(60)).await;
        let log = log_text(&user, asked.id).await;
        assert_eq!(asked.result, Some(WorkResult::Success));
        assert!(log.contains("ifaces=1"), "only lo when the agent does not allow network: {log}");
        assert!(log.contains("does not allow"), "and the log says why: {log}");
    }
    let _open = Agent::start(&c, "open", &["--allow-network", "true"]);
    let asked = user.create_work_request(&command(env, count, json!({"network": true}))).await.expect("create");
    let asked = finished_within(&user, asked.id, Duration::from_secs(60)).await;
    assert!(log_text(&user, asked.id).await.contains(&format!("ifaces={host_ifaces}")));
    let not_asked = user.create_work_request(&command(env, count, json!({}))).await.expect("create");
    let not_asked = finished_within(&user, not_asked.id, Duration::from_secs(60)).await;
    assert!(log_text(&user, not_asked.id).await.contains("ifaces=1"), "no network unless asked");
}

#[tokio::test]
async fn a_data_dir_under_a_private_parent_still_runs_sandboxes() {
    require_privileged!();
    use std::os::unix::fs::PermissionsExt;
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    // Like `mktemp -d`: the sandbox's unprivileged root cannot walk through it.
    let private = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let _agent = Agent::start_in(&c, "private", &[], private);
    let wr = user
        .create_work_request(&command(env, "echo ok > $KILN_OUTPUT/ok && echo ran", json!({})))
        .await
        .expect("create");
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, log_text(&user, wr.id).await);
}
