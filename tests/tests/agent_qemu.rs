//! The qemu backend end to end: a real coordinator, a real kiln-agent, a
//! real `qemu-system-x86_64` booting a `kiln:system-image` made by
//! `kiln-agent image build` (busybox root, Debian's cloud kernel). The same
//! `command` task as on unshare and incus-lxc with the isolation checks that
//! apply to a machine of its own; timeout and abort stop the VM; and
//! `backend: auto` resolves to the simplest backend that fits.

use kiln_shared::{WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::system_images::{busybox_system_image, debian_system_image, upload_system_image};
use kiln_tests::work::{backend_command as command, finished_within as finished, log_text};
use kiln_tests::{require_qemu, wait_for, Coordinator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn qemu_processes(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .filter(|c| c.starts_with("qemu-system") && c.contains(marker))
                .count()
        })
        .unwrap_or(0)
}

/// A VM boots in seconds under TCG: generous limits.
const BOOTED: Duration = Duration::from_secs(240);

#[tokio::test]
async fn a_task_boots_its_own_kernel_without_network_and_returns_its_output() {
    require_qemu!();
    let image = busybox_system_image();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_system_image(&user, &image, "amd64").await;
    let agent = Agent::start(&c, "builder-vm", &["--backends", "unshare,qemu"]);
    let secret = format!("/tmp/kiln-host-secret-{}", std::process::id());
    std::fs::write(&secret, "host only").expect("host file");
    let script = format!(
        "set -e; grep -q kiln-test /etc/os-release; echo image-ok; \
         if test -e {secret}; then echo HOST-FILE-VISIBLE; exit 9; fi; \
         if test -e /work; then echo HOST-TREE-VISIBLE; exit 9; fi; \
         echo ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '); \
         echo uid: $(id -u); echo host: $(hostname); echo kernel: $(uname -r); echo env: $GREETING; \
         echo hello > $KILN_OUTPUT/result.txt; mkdir -p $KILN_OUTPUT/sub; echo deep > $KILN_OUTPUT/sub/x; \
         ln -s /etc/shadow $KILN_OUTPUT/leak; echo to-stderr >&2"
    );
    let wr = user
        .create_work_request(&command(env, "qemu", &script, json!({"env": {"GREETING": "hi there"}})))
        .await
        .expect("create");
    let done = finished(&user, wr.id, BOOTED).await;
    let log = log_text(&user, wr.id).await;
    std::fs::remove_file(&secret).expect("cleanup");
    assert_eq!(done.result, Some(WorkResult::Success), "log:\n{log}\noutput: {:?}\n{}", done.output_data, agent.log());
    assert!(log.contains("image-ok") && log.contains("to-stderr"), "{log}");
    assert!(log.contains("ifaces: lo") && !log.contains("eth"), "no NIC: {log}");
    assert!(log.contains("uid: 0") && log.contains("host: kiln"), "{log}");
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert!(log.contains("kernel: 6.") && !log.contains(&format!("kernel: {}", host_kernel.trim())), "{log}");
    assert!(log.contains("env: hi there"), "{log}");
    assert_eq!(done.resolved_backend.as_deref(), Some("qemu"));
    let ids: Vec<i64> =
        done.output_data["artifacts"].as_array().expect("artifacts").iter().filter_map(Value::as_i64).collect();
    let mut names = Vec::new();
    for id in ids {
        let a = user.artifact(id).await.expect("artifact");
        if a.category == "kiln:task-output" {
            names = a.files.iter().map(|f| f.path.clone()).collect();
        }
    }
    assert_eq!(names, ["result.txt", "sub/x"], "the output files, without the symlink");
    let store = agent.data_dir.path().join("qemu-images").join(env.to_string());
    let accel: Value = serde_json::from_slice(&std::fs::read(store.join("accel.json")).expect("accel.json"))
        .expect("the image is in the QEMU store with its accelerator verdict");
    if accel["accel"] == "tcg" {
        assert!(log.contains("booting with TCG"), "the log says why not KVM: {log}");
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(agent.data_dir.path().join("cache/index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["entries"][0]["stores"], json!(["qemu"]), "{index}");
}

#[tokio::test]
async fn failure_timeout_and_abort_stop_the_machine() {
    require_qemu!();
    let image = busybox_system_image();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_system_image(&user, &image, "amd64").await;
    let agent = Agent::start(&c, "builder-vm", &["--backends", "qemu"]);
    let marker = agent.data_dir.path().to_string_lossy().into_owned();

    let fail =
        user.create_work_request(&command(env, "qemu", "echo about to fail; exit 3", json!({}))).await.expect("c");
    let f = finished(&user, fail.id, BOOTED).await;
    assert_eq!((f.result, f.output_data.get("exit_code")), (Some(WorkResult::Failure), Some(&json!(3))), "{f:?}");
    assert!(log_text(&user, fail.id).await.contains("about to fail"));

    let slow = user
        .create_work_request(&command(env, "qemu", "echo sleeping; sleep 300", json!({"timeout": 30})))
        .await
        .expect("create");
    let t = finished(&user, slow.id, BOOTED).await;
    assert_eq!((t.result, t.output_data.get("timed_out")), (Some(WorkResult::Failure), Some(&json!(true))));
    assert!(log_text(&user, slow.id).await.contains("timeout of 30 s"));
    assert_eq!(qemu_processes(&marker), 0, "the VM is gone");

    let wr = user.create_work_request(&command(env, "qemu", "echo started; sleep 300", json!({}))).await.expect("c");
    wait_for(BOOTED, || async { log_text(&user, wr.id).await.contains("started").then_some(()) })
        .await
        .expect("the task starts");
    assert_eq!(qemu_processes(&marker), 1, "one VM while it runs");
    let aborted_at = Instant::now();
    user.work_request_action(wr.id, "abort").await.expect("abort");
    let gone = wait_for(Duration::from_secs(15), || async { (qemu_processes(&marker) == 0).then_some(()) }).await;
    assert!(gone.is_some(), "the VM is stopped");
    assert!(aborted_at.elapsed() < Duration::from_secs(10), "within {:?}", aborted_at.elapsed());
    let wr = user.work_request(wr.id).await.expect("get");
    assert_eq!(wr.status, WorkStatus::Aborted);
}

#[tokio::test]
async fn backend_auto_resolves_to_the_simplest_backend_that_fits() {
    require_qemu!();
    let image = busybox_system_image();
    let c = Coordinator::start();
    let user = c.user("alice");
    let tarball = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let disk = upload_system_image(&user, &image, "amd64").await;
    let _agent = Agent::start(&c, "builder-auto", &["--backends", "unshare,qemu"]);
    let cases = [
        (tarball, json!({}), "unshare"),
        (disk, json!({"needs": "machine"}), "qemu"),
        (disk, json!({}), "qemu"),
        (tarball, json!({"needs": "container"}), "unshare"),
    ];
    for (env, extra, expected) in cases {
        let wr = user.create_work_request(&command(env, "auto", "echo ran", extra.clone())).await.expect("create");
        let done = finished(&user, wr.id, BOOTED).await;
        assert_eq!(done.result, Some(WorkResult::Success), "{extra}: {:?}", done.output_data);
        assert_eq!(done.resolved_backend.as_deref(), Some(expected), "{extra}");
    }
}

#[tokio::test]
async fn a_debian_image_made_by_image_build_runs_dpkg() {
    require_qemu!();
    let image = debian_system_image();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_system_image(&user, &image, "amd64").await;
    let agent = Agent::start(&c, "builder-debian", &["--backends", "qemu"]);
    let script = "set -e; . /etc/os-release; echo distro: $ID $VERSION_CODENAME; \
                  echo packages: $(dpkg-query -W | wc -l); echo kernel: $(uname -r); \
                  test -d /lib/modules/$(uname -r); echo modules-ok; df -h / | tail -1";
    let wr = user.create_work_request(&command(env, "qemu", script, json!({}))).await.expect("create");
    let done = finished(&user, wr.id, BOOTED).await;
    let log = log_text(&user, wr.id).await;
    assert_eq!(done.result, Some(WorkResult::Success), "log:\n{log}\n{:?}\n{}", done.output_data, agent.log());
    assert!(log.contains("distro: debian bookworm") && log.contains("modules-ok"), "{log}");
}

#[tokio::test]
async fn a_nic_only_when_the_task_asks_and_the_agent_allows() {
    require_qemu!();
    let image = busybox_system_image();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_system_image(&user, &image, "amd64").await;
    let _agent = Agent::start(&c, "builder-net", &["--backends", "qemu", "--allow-network", "true"]);
    let script = "echo ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ')";
    let with = user.create_work_request(&command(env, "qemu", script, json!({"network": true}))).await.expect("c");
    let without = user.create_work_request(&command(env, "qemu", script, json!({}))).await.expect("c");
    for (wr, expected) in [(with, "ifaces: eth0 lo"), (without, "ifaces: lo")] {
        let done = finished(&user, wr.id, BOOTED).await;
        let log = log_text(&user, wr.id).await;
        assert_eq!(done.result, Some(WorkResult::Success), "{log}");
        assert!(log.lines().any(|l| l.trim() == expected), "{expected:?} in {log}");
    }
}
