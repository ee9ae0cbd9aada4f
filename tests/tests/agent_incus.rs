//! The incus-lxc backend end to end: a real coordinator, a real kiln-agent
//! and a real Incus. The same `command` task as the unshare tests, with the
//! isolation checks that apply to an unprivileged container; nothing is
//! left in Incus after tasks that succeed, fail, time out or are aborted;
//! the agent's Incus image store follows its LRU cache.

use kiln_shared::client::Client;
use kiln_shared::work::NewWorkRequest;
use kiln_shared::{WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, debian_minbase, upload_environment};
use kiln_tests::incus::{images, instances, project_of, ProjectGuard};
use kiln_tests::work::{finished_within as finished, log_text};
use kiln_tests::{require_incus, wait_for, Coordinator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Setup {
    c: Coordinator,
    user: Client,
    env: i64,
    agent: Agent,
    project: String,
    _guard: ProjectGuard,
}

fn command(env: i64, script: &str, extra: Value) -> NewWorkRequest {
    kiln_tests::work::backend_command(env, "incus-lxc", script, extra)
}

async fn setup(flags: &[&str]) -> Setup {
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let mut all = vec!["--backends", "unshare,incus-lxc"];
    all.extend_from_slice(flags);
    let agent = Agent::start(&c, "builder-01", &all);
    let project = project_of(agent.data_dir.path());
    Setup { c, user, env, agent, _guard: ProjectGuard(project.clone()), project }
}

/// No container of the agent is left once the work request is over.
async fn assert_no_instances(project: &str) {
    let empty = wait_for(Duration::from_secs(15), || async { instances(project).is_empty().then_some(()) }).await;
    assert!(empty.is_some(), "containers left in {project}: {:?}", instances(project));
}

#[tokio::test]
async fn a_task_runs_in_an_unprivileged_container_without_network_and_leaves_nothing() {
    require_incus!();
    let s = setup(&[]).await;
    let secret = format!("/tmp/kiln-host-secret-{}", std::process::id());
    std::fs::write(&secret, "host only").expect("host file");
    let script = format!(
        "set -e; grep -q kiln-test /etc/os-release; echo image-ok; \
         if test -e {secret}; then echo HOST-FILE-VISIBLE; exit 9; fi; \
         if test -e /work; then echo HOST-TREE-VISIBLE; exit 9; fi; \
         echo ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '); \
         echo uid: $(id -u); cat /proc/self/uid_map; echo host: $(hostname); echo env: $GREETING; \
         echo hello > $KILN_OUTPUT/result.txt; mkdir -p $KILN_OUTPUT/sub; echo deep > $KILN_OUTPUT/sub/x; \
         ln -s /etc/shadow $KILN_OUTPUT/leak; echo to-stderr >&2"
    );
    let wr = s
        .user
        .create_work_request(&command(s.env, &script, json!({"env": {"GREETING": "hi there"}})))
        .await
        .expect("create");
    let done = finished(&s.user, wr.id, Duration::from_secs(120)).await;
    let log = log_text(&s.user, wr.id).await;
    std::fs::remove_file(&secret).expect("cleanup");
    assert_eq!(done.result, Some(WorkResult::Success), "log:\n{log}\noutput: {:?}", done.output_data);
    assert!(log.contains("image-ok") && log.contains("to-stderr"), "{log}");
    assert!(log.contains("ifaces: lo") && !log.contains("eth"), "no NIC: {log}");
    assert!(log.contains("uid: 0"), "root inside: {log}");
    let map = log.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 3 && f[0] == "0").then(|| f[1].parse::<u64>().ok()).flatten()
    });
    assert!(map.is_some_and(|host| host >= 100_000), "root is an unprivileged uid outside: {log}");
    assert!(log.contains("host: kiln-"), "{log}");
    assert!(log.contains("env: hi there"), "{log}");
    assert_eq!(done.resolved_backend.as_deref(), Some("incus-lxc"));
    assert_eq!(done.output_data["provenance"]["backend"], json!("incus-lxc"));
    let ids: Vec<i64> =
        done.output_data["artifacts"].as_array().expect("artifacts").iter().filter_map(Value::as_i64).collect();
    let mut output = None;
    for id in ids {
        let a = s.user.artifact(id).await.expect("artifact");
        if a.category == "kiln:task-output" {
            output = Some(a);
        }
    }
    let output = output.expect("an output artifact");
    let names: Vec<_> = output.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["result.txt", "sub/x"], "pulled, without the symlink");
    assert_no_instances(&s.project).await;
    assert_eq!(images(&s.project), [format!("kiln/{}", s.env)], "the image stays cached in Incus");
    let index: Value = serde_json::from_slice(
        &std::fs::read(s.agent.data_dir.path().join("cache/index.json")).expect("the cache index"),
    )
    .expect("json");
    assert_eq!(index["entries"][0]["stores"], json!(["incus"]), "the index records the store: {index}");
    drop(s.agent);
    drop(s.c);
}

#[tokio::test]
async fn failure_timeout_and_abort_leave_nothing_in_incus() {
    require_incus!();
    let s = setup(&[]).await;
    let fail = s.user.create_work_request(&command(s.env, "echo about to fail; exit 3", json!({}))).await.expect("c");
    let f = finished(&s.user, fail.id, Duration::from_secs(120)).await;
    assert_eq!((f.result, f.output_data.get("exit_code")), (Some(WorkResult::Failure), Some(&json!(3))));
    assert!(log_text(&s.user, fail.id).await.contains("about to fail"));
    assert_no_instances(&s.project).await;

    let slow =
        s.user.create_work_request(&command(s.env, "echo sleeping; sleep 60", json!({"timeout": 3}))).await.expect("c");
    let started = Instant::now();
    let t = finished(&s.user, slow.id, Duration::from_secs(120)).await;
    assert_eq!(t.result, Some(WorkResult::Failure));
    assert_eq!(t.output_data.get("timed_out"), Some(&json!(true)));
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(log_text(&s.user, slow.id).await.contains("timeout of 3 s"));
    assert_no_instances(&s.project).await;

    let marker = format!("kiln-abort-{}", std::process::id());
    let script = format!("echo started; (sleep 300; echo {marker}) & sleep 301; echo never");
    let wr = s.user.create_work_request(&command(s.env, &script, json!({}))).await.expect("create");
    wait_for(Duration::from_secs(60), || async { log_text(&s.user, wr.id).await.contains("started").then_some(()) })
        .await
        .expect("the task starts");
    assert_eq!(instances(&s.project).len(), 1, "one container while it runs");
    let aborted_at = Instant::now();
    s.user.work_request_action(wr.id, "abort").await.expect("abort");
    assert_no_instances(&s.project).await;
    assert!(aborted_at.elapsed() < Duration::from_secs(10), "gone within {:?}", aborted_at.elapsed());
    let wr = s.user.work_request(wr.id).await.expect("get");
    assert_eq!((wr.status, wr.abort_reason.as_deref()), (WorkStatus::Aborted, Some("user")));
}

/// A copy of the busybox image that differs by one file (another artifact,
/// another Incus fingerprint).
fn variant(n: u32) -> PathBuf {
    let base = busybox_rootfs();
    let out =
        base.with_file_name(format!("busybox-variant-{n}-{}", base.file_name().unwrap_or_default().to_string_lossy()));
    if out.exists() {
        return out;
    }
    let work = tempfile::tempdir().expect("tmp");
    let ok = std::process::Command::new("tar").arg("-xzf").arg(&base).arg("-C").arg(work.path()).status().expect("tar");
    assert!(ok.success());
    std::fs::write(work.path().join("etc/kiln-variant"), format!("{n}\n")).expect("write");
    let tmp = out.with_extension(format!("partial-{}", std::process::id()));
    let ok = std::process::Command::new("tar")
        .args(["--numeric-owner", "-czf"])
        .arg(&tmp)
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success());
    std::fs::rename(&tmp, &out).expect("publish");
    out
}

fn index_entries(agent: &Agent) -> Vec<(i64, Vec<String>)> {
    let bytes = std::fs::read(agent.data_dir.path().join("cache/index.json")).unwrap_or_default();
    let index: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut entries: Vec<(i64, Vec<String>)> = index["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let stores = e["stores"].as_array().into_iter().flatten();
                    (
                        e["artifact_id"].as_i64().unwrap_or(0),
                        stores.filter_map(|s| s.as_str().map(str::to_owned)).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

#[tokio::test]
async fn the_incus_store_follows_the_lru_cache_and_is_reconciled_at_start() {
    require_incus!();
    let mut s = setup(&["--max-images", "3"]).await;
    let mut envs = Vec::new();
    for n in 1..=5 {
        envs.push(upload_environment(&s.user, &variant(n), "amd64").await);
    }
    for env in &envs {
        let wr = s.user.create_work_request(&command(*env, "cat /etc/kiln-variant", json!({}))).await.expect("c");
        let done = finished(&s.user, wr.id, Duration::from_secs(120)).await;
        assert_eq!(done.result, Some(WorkResult::Success), "{:?}", done.output_data);
        let cached = index_entries(&s.agent);
        let stored = images(&s.project);
        assert!(cached.len() <= 3 && stored.len() <= 3, "cache {cached:?}, Incus {stored:?}");
        let expected: Vec<String> = cached.iter().map(|(id, _)| format!("kiln/{id}")).collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(stored, expected, "Incus holds what the cache holds");
    }
    let cached = index_entries(&s.agent);
    assert_eq!(cached.iter().map(|(id, _)| *id).collect::<Vec<_>>(), envs[2..].to_vec(), "the 3 most recent");
    assert!(cached.iter().all(|(_, stores)| stores == &["incus".to_owned()]), "{cached:?}");

    // A crash leaves Incus out of step: a stray kiln image, a lost copy.
    s.agent.kill();
    let stray = variant(1);
    let meta = tempfile::tempdir().expect("tmp");
    std::fs::write(meta.path().join("metadata.yaml"), "architecture: x86_64\ncreation_date: 1\n").expect("meta");
    let meta_tar = meta.path().join("meta.tar");
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&meta_tar)
        .arg("-C")
        .arg(meta.path())
        .arg("metadata.yaml")
        .status()
        .expect("tar");
    assert!(ok.success());
    kiln_tests::incus::incus(&[
        "image",
        "import",
        "--project",
        &s.project,
        &meta_tar.to_string_lossy(),
        &stray.to_string_lossy(),
        "--alias",
        "kiln/999",
    ]);
    let lost = format!("kiln/{}", envs[4]);
    kiln_tests::incus::incus(&["image", "delete", "--project", &s.project, &lost]);
    s.agent.restart();
    let reconciled = wait_for(Duration::from_secs(60), || async {
        let entries = index_entries(&s.agent);
        let lost_forgotten = entries.iter().any(|(id, stores)| *id == envs[4] && stores.is_empty());
        (lost_forgotten && !images(&s.project).contains(&"kiln/999".to_owned())).then_some(entries)
    })
    .await;
    assert!(
        reconciled.is_some(),
        "after a restart: Incus {:?}, cache {:?}\n{}",
        images(&s.project),
        index_entries(&s.agent),
        s.agent.log()
    );
    let mut expected = vec![format!("kiln/{}", envs[2]), format!("kiln/{}", envs[3])];
    expected.sort();
    assert_eq!(images(&s.project), expected);
    // The image whose copy was lost is imported again when a task needs it.
    let wr = s.user.create_work_request(&command(envs[4], "cat /etc/kiln-variant", json!({}))).await.expect("c");
    let done = finished(&s.user, wr.id, Duration::from_secs(120)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}", done.output_data);
    assert!(log_text(&s.user, wr.id).await.contains('5'));
    assert!(images(&s.project).contains(&lost));
}

#[tokio::test]
async fn incus_vm_is_reported_unavailable_with_its_reason_and_never_gets_work() {
    require_incus!();
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let agent = Agent::start(&c, "builder-vm", &["--backends", "unshare,incus-vm"]);
    let _guard = ProjectGuard(project_of(agent.data_dir.path()));
    let admin = c.admin();
    let metadata = wait_for(Duration::from_secs(60), || async {
        let workers = admin.workers().await.ok()?;
        let w = workers.items.into_iter().find(|w| w.name == "builder-vm")?;
        w.metadata.contains_key("executor:incus-vm:available").then_some(w.metadata)
    })
    .await
    .expect("the agent publishes its metadata");
    assert_eq!(metadata.get("executor:incus-vm:available"), Some(&json!(false)), "{metadata:?}");
    let reason = metadata.get("executor:incus-vm:reason").and_then(Value::as_str).unwrap_or_default().to_owned();
    let vsock = std::path::Path::new("/dev/vhost-vsock").exists();
    if !vsock {
        assert!(reason.contains("vhost_vsock"), "the reason Incus gives: {reason:?}");
    }
    assert!(!reason.is_empty());
    let mut vm = command(env, "true", json!({}));
    vm.task_data.insert("backend".into(), json!("incus-vm"));
    let vm = user.create_work_request(&vm).await.expect("create");
    let unshare = user
        .create_work_request(&{
            let mut n = command(env, "echo done", json!({}));
            n.task_data.insert("backend".into(), json!("unshare"));
            n
        })
        .await
        .expect("create");
    let done = finished(&user, unshare.id, Duration::from_secs(60)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "the agent takes the work it can do");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let vm = user.work_request(vm.id).await.expect("get");
    assert_eq!((vm.status, vm.worker.as_deref()), (WorkStatus::Pending, None), "incus-vm work is never assigned");
}

/// The shim's pid from the agent's journal, once the task has one.
async fn shim_pid(agent: &Agent) -> i32 {
    let journal = agent.data_dir.path().join("journal");
    wait_for(Duration::from_secs(60), || async {
        let entry = std::fs::read_dir(&journal)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
        let record: Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
        record["shim"]["pid"].as_i64().map(|p| p as i32)
    })
    .await
    .expect("the shim started")
}

#[tokio::test]
async fn a_container_task_survives_agent_restarts_and_a_lost_shim_leaves_no_container() {
    require_incus!();
    let mut s = setup(&[]).await;
    let admin = s.c.admin();
    let md = wait_for(Duration::from_secs(60), || async {
        let w = admin.worker("builder-01").await.ok()?;
        w.metadata.contains_key("executor:incus-lxc:network").then_some(w.metadata)
    })
    .await
    .expect("metadata");
    assert_eq!(md.get("executor:incus-lxc:available"), Some(&json!(true)), "{md:?}");
    assert_eq!(md.get("executor:incus-lxc:network"), Some(&json!(false)), "no NIC configured here: {md:?}");

    let script = "i=1; while [ $i -le 8 ]; do echo line $i; i=$((i+1)); sleep 0.5; done";
    let wr = s.user.create_work_request(&command(s.env, script, json!({}))).await.expect("create");
    wait_for(Duration::from_secs(60), || async { log_text(&s.user, wr.id).await.contains("line 2").then_some(()) })
        .await
        .expect("the task runs");
    s.agent.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.agent.restart();
    let done = finished(&s.user, wr.id, Duration::from_secs(120)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, s.agent.log());
    let log = log_text(&s.user, wr.id).await;
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(lines, (1..=8).map(|i| format!("line {i}")).collect::<Vec<_>>(), "every line once");
    assert_eq!(done.attempts.len(), 1);
    assert_no_instances(&s.project).await;

    // A shim killed outright: its container is deleted by the agent.
    let wr = s.user.create_work_request(&command(s.env, "echo started; sleep 300", json!({}))).await.expect("c");
    wait_for(Duration::from_secs(60), || async { log_text(&s.user, wr.id).await.contains("started").then_some(()) })
        .await
        .expect("the task runs");
    let pid = shim_pid(&s.agent).await;
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(killed.success(), "kill -9 the shim");
    // Attempt 1's container goes; the automatic retry may already have
    // started attempt 2's, which is stopped below.
    let first = format!("kiln-{}-{}-", wr.id, wr.attempt);
    let gone = wait_for(Duration::from_secs(15), || async {
        (!instances(&s.project).iter().any(|name| name.starts_with(&first))).then_some(())
    })
    .await;
    assert!(gone.is_some(), "attempt 1's container left in {}: {:?}", s.project, instances(&s.project));
    let lost = wait_for(Duration::from_secs(120), || async {
        let wr = s.user.work_request(wr.id).await.ok()?;
        wr.attempts.first().and_then(|a| a.result).map(|_| wr)
    })
    .await
    .expect("the attempt ends");
    assert_eq!(lost.attempts[0].result, Some(WorkResult::Error), "{lost:?}");
    // The error is retried automatically: stop the retry before the test
    // ends, so that no shim outlives it.
    s.user.work_request_action(wr.id, "abort").await.expect("abort the retry");
    finished(&s.user, wr.id, Duration::from_secs(60)).await;
    assert_no_instances(&s.project).await;
}

#[tokio::test]
async fn a_debian_minbase_image_without_init_runs_in_a_container() {
    require_incus!();
    let s = setup(&[]).await;
    let env = upload_environment(&s.user, &debian_minbase(), "amd64").await;
    let script =
        ". /etc/os-release; echo distro: $ID $VERSION_CODENAME; echo init: $(cat /proc/1/cmdline | tr '\\0' ' '); \
                  echo packages: $(dpkg-query -W | wc -l); echo ok > $KILN_OUTPUT/ok";
    let wr = s.user.create_work_request(&command(env, script, json!({}))).await.expect("create");
    let done = finished(&s.user, wr.id, Duration::from_secs(300)).await;
    let log = log_text(&s.user, wr.id).await;
    assert_eq!(done.result, Some(WorkResult::Success), "log:\n{log}\n{:?}", done.output_data);
    assert!(log.contains("distro: debian bookworm"), "{log}");
    assert!(log.contains("init: /bin/sleep"), "minbase has no init: the keep-alive runs as pid 1: {log}");
    assert_no_instances(&s.project).await;
}
