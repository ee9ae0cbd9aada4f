//! The agent running untrusted `command` tasks in the unshare backend, end
//! to end: real coordinator, real kiln-agent, real namespaces and cgroups.

use kiln_shared::client::Client;
use kiln_shared::{WorkResult, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::work::{finished_within, log_text, shell_command as command};
use kiln_tests::{require_privileged, wait_for, Coordinator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Setup {
    c: Coordinator,
    user: Client,
    env: i64,
    agent: Agent,
}

async fn setup(agent_flags: &[&str]) -> Setup {
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let agent = Agent::start(&c, "builder-01", agent_flags);
    Setup { c, user, env, agent }
}

#[tokio::test]
async fn a_task_sees_only_its_image_loopback_and_its_own_root() {
    require_privileged!();
    let s = setup(&[]).await;
    let secret = format!("/tmp/kiln-host-secret-{}", std::process::id());
    std::fs::write(&secret, "host only").expect("host file");
    let script = format!(
        "set -e; grep -q kiln-test /etc/os-release; echo image-ok; \
         if test -e {secret}; then echo HOST-FILE-VISIBLE; exit 9; fi; \
         if test -e /work; then echo HOST-TREE-VISIBLE; exit 9; fi; \
         echo ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '); \
         echo uid: $(id -u); cat /proc/self/uid_map; echo host: $(hostname); echo pid: $$; \
         echo hello > $KILN_OUTPUT/result.txt; mkdir -p $KILN_OUTPUT/sub; echo deep > $KILN_OUTPUT/sub/x; \
         ln -s /etc/shadow $KILN_OUTPUT/leak"
    );
    let wr = s.user.create_work_request(&command(s.env, &script, json!({}))).await.expect("create");
    let done = finished_within(&s.user, wr.id, Duration::from_secs(60)).await;
    let log = log_text(&s.user, wr.id).await;
    std::fs::remove_file(&secret).expect("cleanup");
    assert_eq!(done.result, Some(WorkResult::Success), "log:\n{log}\noutput: {:?}", done.output_data);
    assert!(log.contains("image-ok"), "{log}");
    assert!(log.contains("ifaces: lo") && !log.contains("eth"), "only lo: {log}");
    assert!(log.contains("uid: 0"), "root inside: {log}");
    assert!(
        log.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"]),
        "mapped to an unprivileged uid outside: {log}"
    );
    assert!(log.contains("host: kiln"), "{log}");
    assert_eq!(done.resolved_backend.as_deref(), Some("unshare"));
    let prov = done.output_data.get("provenance").expect("provenance");
    let env = s.user.artifact(s.env).await.expect("env");
    assert_eq!(prov.get("environment_sha256").and_then(Value::as_str), Some(env.files[0].sha256.as_str()));
    assert_eq!(prov.get("backend").and_then(Value::as_str), Some("unshare"));
    // The output directory became an artifact, without the symlink.
    let ids: Vec<i64> =
        done.output_data["artifacts"].as_array().expect("artifacts").iter().filter_map(Value::as_i64).collect();
    let mut categories = Vec::new();
    for id in &ids {
        let a = s.user.artifact(*id).await.expect("artifact");
        categories.push(a.category.clone());
        if a.category == "kiln:task-output" {
            let names: Vec<_> = a.files.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(names, ["result.txt", "sub/x"]);
            let body = s.user.download_file(a.id, "result.txt").await.expect("dl").text().await.expect("text");
            assert_eq!(body, "hello\n");
        }
    }
    categories.sort();
    assert_eq!(categories, ["kiln:task-log", "kiln:task-output"]);
    drop(s.agent);
    drop(s.c);
}

#[tokio::test]
async fn failure_error_and_timeout_are_told_apart() {
    require_privileged!();
    let s = setup(&[]).await;
    let fail =
        s.user.create_work_request(&command(s.env, "echo about to fail; exit 3", json!({}))).await.expect("create");
    let missing = s.user.create_work_request(&command(s.env, "true", json!({}))).await.expect("create");
    let _ = missing;
    let no_cmd = {
        let mut n = command(s.env, "", json!({}));
        n.task_data.insert("command".into(), json!(["/no/such/program"]));
        s.user.create_work_request(&n).await.expect("create")
    };
    let slow = s
        .user
        .create_work_request(&command(s.env, "echo sleeping; sleep 60", json!({"timeout": 2})))
        .await
        .expect("create");
    let f = finished_within(&s.user, fail.id, Duration::from_secs(60)).await;
    assert_eq!((f.result, f.output_data.get("exit_code")), (Some(WorkResult::Failure), Some(&json!(3))));
    assert!(log_text(&s.user, fail.id).await.contains("about to fail"));
    let n = finished_within(&s.user, no_cmd.id, Duration::from_secs(60)).await;
    assert_eq!(n.result, Some(WorkResult::Failure), "a command that cannot run is the task's failure");
    assert!(log_text(&s.user, no_cmd.id).await.contains("/no/such/program"));
    let started = Instant::now();
    let t = finished_within(&s.user, slow.id, Duration::from_secs(60)).await;
    assert_eq!(t.result, Some(WorkResult::Failure));
    assert_eq!(t.output_data.get("timed_out"), Some(&json!(true)));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(log_text(&s.user, slow.id).await.contains("timeout of 2 s"));

    // An environment that is not a root filesystem is the infrastructure's error.
    let garbage = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(garbage.path(), b"this is not a tarball").expect("write");
    let bad_env = upload_environment(&s.user, garbage.path(), "amd64").await;
    let e = s.user.create_work_request(&command(bad_env, "true", json!({}))).await.expect("create");
    let e = finished_within(&s.user, e.id, Duration::from_secs(90)).await;
    assert_eq!((e.status, e.result), (WorkStatus::Completed, Some(WorkResult::Error)), "{:?}", e.output_data);
    assert_eq!(e.attempts.len(), 4, "errors are retried automatically three times");
    let code = e.output_data["errors"][0]["code"].as_str().unwrap_or_default().to_owned();
    assert!(code.starts_with("image-"), "error code names the image problem: {code}");
}

#[tokio::test]
async fn abort_stops_the_whole_tree_within_seconds() {
    require_privileged!();
    let s = setup(&[]).await;
    let marker = format!("kiln-abort-{}", std::process::id());
    let script = format!("echo started; (sleep 300; echo {marker}) & sleep 301; echo never");
    let wr = s.user.create_work_request(&command(s.env, &script, json!({}))).await.expect("create");
    wait_for(Duration::from_secs(60), || async { log_text(&s.user, wr.id).await.contains("started").then_some(()) })
        .await
        .expect("the task starts");
    let running = || {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                    .filter(|c| String::from_utf8_lossy(c).contains(&marker))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(running() >= 2, "the task's shell and its subshell are running");
    let aborted_at = Instant::now();
    s.user.work_request_action(wr.id, "abort").await.expect("abort");
    let gone = wait_for(Duration::from_secs(10), || async { (running() == 0).then_some(()) }).await;
    assert!(gone.is_some(), "every process of the task is gone");
    // By design ≤ ~4.3 s (1.5 s heartbeat + 0.2 s poll + 2.5 s grace); the
    // bound leaves scheduling slack for a loaded 2-core CI machine.
    assert!(aborted_at.elapsed() < Duration::from_secs(8), "stopped within {:?}", aborted_at.elapsed());
    let wr = s.user.work_request(wr.id).await.expect("get");
    assert_eq!((wr.status, wr.abort_reason.as_deref()), (WorkStatus::Aborted, Some("user")));
    let log = wait_for(Duration::from_secs(10), || async {
        let l = log_text(&s.user, wr.id).await;
        l.contains("aborted").then_some(l)
    })
    .await
    .expect("the agent reports the stop in the log");
    assert!(!log.contains("never"), "{log}");
}

#[tokio::test]
async fn a_memory_hog_is_killed_by_its_limit() {
    require_privileged!();
    let s = setup(&["--memory-limit", "64MiB"]).await;
    let wr = s
        .user
        .create_work_request(&command(
            s.env,
            "echo allocating; dd if=/dev/zero of=/dev/null bs=300M count=1; echo survived",
            json!({}),
        ))
        .await
        .expect("create");
    let done = finished_within(&s.user, wr.id, Duration::from_secs(60)).await;
    let log = log_text(&s.user, wr.id).await;
    assert_eq!(done.result, Some(WorkResult::Failure), "{log}");
    assert_eq!(done.output_data.get("oom_killed"), Some(&json!(true)), "{:?}\n{log}", done.output_data);
    assert!(log.contains("memory limit"), "{log}");
}

#[tokio::test]
async fn logs_reach_a_follower_while_the_task_runs() {
    require_privileged!();
    let s = setup(&[]).await;
    let wr = s
        .user
        .create_work_request(&command(s.env, "echo first line; sleep 4; echo second line", json!({})))
        .await
        .expect("create");
    let seen = wait_for(Duration::from_secs(30), || async {
        let log = log_text(&s.user, wr.id).await;
        log.contains("first line").then_some(log)
    })
    .await
    .expect("the first line arrives");
    assert!(!seen.contains("second line"), "seen while the task still runs");
    let running = s.user.work_request(wr.id).await.expect("get");
    assert_eq!(running.status, WorkStatus::Running);
    let done = finished_within(&s.user, wr.id, Duration::from_secs(30)).await;
    assert_eq!(done.result, Some(WorkResult::Success));
    assert!(log_text(&s.user, wr.id).await.contains("second line"));
}
