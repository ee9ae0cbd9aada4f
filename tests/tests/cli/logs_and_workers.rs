//! `kiln logs` (plain, timestamps, JSON lines, live follow) and
//! `kiln workers` (list, show, enable, disable, set-metadata, delete).

use crate::support::{output, Kiln};
use kiln_shared::work::{LogLine, LogStream};
use kiln_shared::WorkResult;
use kiln_tests::work::{finish, noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::Value;
use std::time::Duration;

fn line(seq: u64, stream: LogStream, text: &str) -> LogLine {
    LogLine { seq, ts: chrono::Utc::now(), stream, text: text.into(), attempt: None }
}

#[tokio::test]
async fn logs_print_text_timestamps_or_json_lines_and_follow_to_the_end() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "reader");
    let user = c.client(k.token.as_deref().expect("token"));
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&worker).await;
    let first = [line(1, LogStream::Stdout, "building"), line(2, LogStream::Stderr, "warning: x")];
    worker.append_log(wr.id, got.attempt, &first).await.expect("append");
    let id = wr.id.to_string();

    assert_eq!(k.run(&["logs", &id]).await.ok().stdout, "building\nwarning: x\n");
    let stamped = k.run(&["logs", &id, "-t"]).await.ok().stdout;
    assert!(stamped.lines().nth(1).is_some_and(|l| l.contains(" #1 stderr warning: x")), "{stamped}");
    let json = k.run(&["logs", &id, "--json"]).await.ok().stdout;
    let lines: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!((lines.len(), &lines[1]["stream"]), (2, &Value::from("stderr")));
    assert_eq!(k.run(&["logs", &id, "--attempt", "2"]).await.ok().stdout, "");

    // -f keeps printing until the request ends, then exits 0.
    let follower = tokio::spawn(output(k.command(&["logs", "-f", &id])));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!follower.is_finished(), "a follower waits while the request runs");
    worker.append_log(wr.id, got.attempt, &[line(3, LogStream::Stdout, "done")]).await.expect("append");
    finish(&worker, &got, WorkResult::Success).await;
    let run = tokio::time::timeout(Duration::from_secs(20), follower).await.expect("ends").expect("kiln").ok();
    assert_eq!(run.stdout, "building\nwarning: x\ndone\n");

    k.run(&["logs", "999"]).await.expect_code(65);
}

#[tokio::test]
async fn workers_are_listed_shown_and_managed() {
    let c = Coordinator::start();
    let user = Kiln::user(&c, "u");
    let admin = Kiln::admin(&c, "root");
    enrolled_worker(&c, "builder-01", amd64_metadata()).await;

    let table = user.run(&["workers"]).await.ok().stdout;
    assert!(table.starts_with("NAME") && table.contains("builder-01") && table.contains("amd64"), "{table}");
    let list = user.json(&["workers", "list"]).await;
    assert_eq!(list["items"][0]["name"], "builder-01");
    let shown = user.run(&["workers", "show", "builder-01"]).await.ok().stdout;
    assert!(shown.contains("system:host_architecture") && shown.contains("enabled:"), "{shown}");

    user.run(&["workers", "disable", "builder-01"]).await.expect_code(77).one_line_error("admin");
    assert!(admin.run(&["workers", "disable", "builder-01"]).await.ok().stdout.contains("disabled"));
    assert_eq!(user.json(&["workers", "show", "builder-01"]).await["enabled"], false);
    assert_eq!(admin.json(&["workers", "enable", "builder-01"]).await["enabled"], true);

    let edited = admin
        .json(&["workers", "set-metadata", "builder-01", "--set", "system:cpu_count=64", "--set", "rack=r1"])
        .await;
    assert_eq!(edited["static_metadata"], serde_json::json!({"system:cpu_count": 64, "rack": "r1"}));
    assert_eq!(edited["metadata"]["system:cpu_count"], 64, "static overrides dynamic");
    let edited = admin.json(&["workers", "set-metadata", "builder-01", "--unset", "rack"]).await;
    assert_eq!(edited["static_metadata"], serde_json::json!({"system:cpu_count": 64}));
    let shown = admin.run(&["workers", "show", "builder-01"]).await.ok().stdout;
    assert!(shown.lines().any(|l| l.contains("system:cpu_count") && l.contains("(static)")), "{shown}");
    let edited = admin.json(&["workers", "set-metadata", "builder-01", "--replace"]).await;
    assert_eq!(edited["static_metadata"], serde_json::json!({}));

    assert!(admin.run(&["workers", "delete", "builder-01"]).await.ok().stdout.contains("deleted"));
    user.run(&["workers", "show", "builder-01"]).await.expect_code(65).one_line_error("builder-01");
    admin.run(&["workers", "enable", "nobody"]).await.expect_code(65);
}
