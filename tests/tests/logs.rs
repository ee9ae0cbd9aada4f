//! Task logs (DESIGN §6a): idempotent seq-numbered append, reading,
//! following until the request ends, and the cap's explicit truncation line.

use chrono::Utc;
use futures_util::StreamExt;
use kiln_shared::client::Client;
use kiln_shared::work::{LogLine, LogStream};
use kiln_shared::WorkResult;
use kiln_tests::work::{finish, noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use reqwest::Method;
use std::time::Duration;

fn line(seq: u64, text: &str) -> LogLine {
    LogLine { seq, ts: Utc::now(), stream: LogStream::Stdout, text: text.to_owned(), attempt: None }
}

async fn read_all(client: &Client, id: i64) -> Vec<LogLine> {
    let body = client.log(id, false).await.expect("log").text().await.expect("body");
    body.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[tokio::test]
async fn appends_are_idempotent_by_seq() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&worker).await;
    let ack = worker
        .append_log(wr.id, got.attempt, &[line(1, "one"), line(2, "two"), line(3, "three")])
        .await
        .expect("append");
    assert_eq!(ack.acknowledged_seq, 3);
    // A resend after a lost reply overlaps what is stored.
    let ack = worker
        .append_log(wr.id, got.attempt, &[line(2, "two"), line(3, "three"), line(4, "four")])
        .await
        .expect("resend");
    assert_eq!(ack.acknowledged_seq, 4);
    let lines = read_all(&user, wr.id).await;
    let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    assert!(lines.iter().all(|l| l.attempt == Some(got.attempt)));
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // The worker may read its own log too.
    assert_eq!(read_all(&worker, wr.id).await.len(), 4);
}

#[tokio::test]
async fn a_follower_sees_lines_live_and_stops_when_the_request_ends() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&worker).await;
    let resp = user.log(wr.id, true).await.expect("follow");
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    for seq in 1..=3u64 {
        worker.append_log(wr.id, got.attempt, &[line(seq, &format!("line {seq}"))]).await.expect("append");
        // Each line reaches the follower within a second.
        while !seen.contains(&format!("line {seq}")) {
            let chunk = tokio::time::timeout(Duration::from_secs(1), body.next())
                .await
                .expect("a line within a second")
                .expect("stream open")
                .expect("chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    finish(&worker, &got, WorkResult::Success).await;
    // The stream ends once the request has ended.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    })
    .await;
    assert!(rest.is_ok(), "follow must end when the request completes");
    assert_eq!(seen.lines().count(), 3);
}

#[tokio::test]
async fn the_cap_ends_in_an_explicit_truncation_line() {
    let c = Coordinator::start_with(&["--log-cap", "1KiB"]);
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&worker).await;
    let lines: Vec<_> = (1..=20).map(|seq| line(seq, &"x".repeat(100))).collect();
    let ack = worker.append_log(wr.id, got.attempt, &lines).await.expect("append");
    assert_eq!(ack.acknowledged_seq, 20, "dropped lines are still acknowledged");
    let more = worker.append_log(wr.id, got.attempt, &[line(21, "after the cap")]).await.expect("append");
    assert_eq!(more.acknowledged_seq, 21);
    let stored = read_all(&user, wr.id).await;
    assert_eq!(stored.len(), 11, "10 lines of 100 bytes fit in 1 KiB, then one truncation line");
    let last = stored.last().expect("a last line");
    assert_eq!(last.stream, LogStream::Kiln);
    assert!(last.text.contains("truncated") && last.text.contains("1024"), "{}", last.text);
    assert!(!stored.iter().any(|l| l.text == "after the cap"));
}

#[tokio::test]
async fn bad_appends_are_refused_whole() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let other = enrolled_worker(&c, "w2", amd64_metadata()).await;
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&worker).await;
    let path = format!("/api/1/work-requests/{}/log?attempt={}", wr.id, got.attempt);
    let ok = serde_json::to_string(&line(1, "fine")).expect("json");
    for (body, code) in [
        (format!("{ok}\nnot json\n"), "invalid-log-line"),
        (format!("{ok}\n{ok}\n"), "invalid-log-line"), // seq does not increase
        (r#"{"seq":1,"ts":"yesterday","stream":"stdout","text":"x"}"#.to_owned(), "invalid-log-line"),
        (r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","stream":"stdlog","text":"x"}"#.to_owned(), "invalid-log-line"),
        (r#"{"seq":0,"ts":"2026-01-01T00:00:00Z","stream":"stdout","text":"x"}"#.to_owned(), "invalid-log-line"),
    ] {
        let err = worker.send(worker.request(Method::POST, &path).body(body.clone())).await.expect_err(&body);
        assert_eq!((err.status().map(|s| s.as_u16()), err.code()), (Some(400), Some(code)), "{body}");
    }
    assert!(read_all(&user, wr.id).await.is_empty(), "nothing from a refused body is stored");
    let missing = worker
        .send(worker.request(Method::POST, &format!("/api/1/work-requests/{}/log", wr.id)).body(ok.clone()))
        .await;
    assert_eq!(missing.expect_err("attempt required").status().map(|s| s.as_u16()), Some(400));
    // Another worker cannot write into this log, nor can a user.
    let err = other.append_log(wr.id, got.attempt, &[line(1, "intruder")]).await.expect_err("not its work");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));
    let err = user.append_log(wr.id, got.attempt, &[line(1, "user")]).await.expect_err("users do not append");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));
    let err = worker.append_log(wr.id, got.attempt + 1, &[line(1, "future")]).await.expect_err("no such attempt");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));
}
