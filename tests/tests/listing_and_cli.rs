//! Listing work requests (filters, cursor pagination) and the coordinator's
//! administrative command line and configuration file.

use kiln_shared::client::WorkRequestFilter;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::work::{finish, noop, request, take};
use kiln_tests::{amd64_metadata, binary, enrolled_worker, Coordinator};
use std::collections::HashSet;
use std::process::Command;

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(user.create_work_request(&noop(&[])).await.expect("create").id);
    }
    let sync = user.create_work_request(&request(TaskType::Internal, "synchronization_point")).await.expect("sync");
    let got = take(&worker).await;
    finish(&worker, &got, WorkResult::Success).await;

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = user
            .work_requests(&WorkRequestFilter {
                task_name: Some("noop".into()),
                limit: Some(3),
                cursor,
                ..Default::default()
            })
            .await
            .expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|w| w.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every noop exactly once, newest first");

    let pending = user
        .work_requests(&WorkRequestFilter { status: Some("pending".into()), ..Default::default() })
        .await
        .expect("pending");
    let pending: HashSet<_> = pending.items.iter().map(|w| w.id).collect();
    assert_eq!(pending.len(), 6);
    assert!(!pending.contains(&got.id) && !pending.contains(&sync.id));
    let completed = user
        .work_requests(&WorkRequestFilter { status: Some("completed".into()), ..Default::default() })
        .await
        .expect("completed");
    let mut completed: Vec<_> = completed.items.iter().map(|w| (w.id, w.status)).collect();
    completed.sort();
    assert_eq!(completed, vec![(got.id, WorkStatus::Completed), (sync.id, WorkStatus::Completed)]);
}

#[test]
fn config_file_is_validated_and_unknown_keys_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nlog_cap = \"2MiB\"\n", dir.path()))
        .expect("write");
    let out = Command::new(binary("kiln-coordinator"))
        .args(["--config"])
        .arg(&good)
        .arg("validate-config")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nheartbeat_gracе = 5\n").expect("write");
    let out = Command::new(binary("kiln-coordinator"))
        .args(["--config"])
        .arg(&bad)
        .arg("validate-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("heartbeat_gracе"), "names the file and the key: {err}");

    let missing = Command::new(binary("kiln-coordinator"))
        .args(["--config", "/nonexistent/kiln.toml", "validate-config"])
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/kiln.toml"));
}

#[tokio::test]
async fn serve_reads_its_config_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("coordinator.toml");
    std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n", dir.path().join("data")))
        .expect("write");
    let mut child = Command::new(binary("kiln-coordinator"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("line");
    let url = line.trim().trim_start_matches("kiln-coordinator listening on ").to_owned();
    let health = kiln_shared::client::Client::new(&url, None).expect("client").health().await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.expect("health").status, "ok");
    assert!(dir.path().join("data/kiln.sqlite3").exists(), "data_dir from the file is used");
}

#[test]
fn token_and_worker_commands() {
    let c = Coordinator::start();
    let token = c.token("user", "carol");
    assert_eq!(token.len(), 64);
    let dup = c.admin_command(&["token", "create", "--role", "user", "--name", "carol"]);
    assert!(!dup.status.success(), "names are unique");
    let listed = c.admin_command(&["token", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("carol") && !text.contains(&token), "list shows names, never tokens: {text}");
    assert!(c.admin_command(&["token", "revoke", "carol"]).status.success());
    assert!(String::from_utf8_lossy(&c.admin_command(&["token", "list"]).stdout).contains("revoked"));
    let bad_name = c.admin_command(&["token", "create", "--role", "user", "--name", "no spaces"]);
    assert!(!bad_name.status.success());
    let unknown = c.admin_command(&["worker", "enable", "ghost"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("ghost"));
    let nothing = c.admin_command(&["worker", "edit-metadata", "ghost"]);
    assert!(!nothing.status.success());
}
