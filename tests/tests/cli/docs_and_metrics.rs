//! `kiln health`, `kiln metrics` (and who may scrape `GET /metrics`), shell
//! completions, the man page, `--help` and `--version`.

use crate::support::{bare, output, Kiln};
use kiln_shared::WorkResult;
use kiln_tests::work::{finish, noop, take, with_data};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::{json, Value};

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_work_workers_latency_and_requests() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "ops");
    let user = c.client(k.token.as_deref().expect("token"));
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    user.create_work_request(&noop(&[])).await.expect("create");
    for _ in 0..2 {
        user.create_work_request(&with_data(noop(&[]), json!({"host_architecture": "arm64"}))).await.expect("create");
    }
    let got = take(&worker).await;
    let line = kiln_shared::work::LogLine {
        seq: 1,
        ts: chrono::Utc::now(),
        stream: kiln_shared::work::LogStream::Stdout,
        text: "0123456789".into(),
        attempt: None,
    };
    worker.append_log(got.id, got.attempt, &[line]).await.expect("log");
    k.run(&["show", "999"]).await.expect_code(65);

    let text = k.run(&["metrics"]).await.ok().stdout;
    assert_eq!(sample(&text, "kiln_work_requests{status=\"pending\"}"), 2.0);
    assert_eq!(sample(&text, "kiln_work_requests{status=\"running\"}"), 1.0);
    assert_eq!(sample(&text, "kiln_workers_connected"), 1.0);
    assert_eq!(sample(&text, "kiln_workers_busy"), 1.0);
    assert_eq!(sample(&text, "kiln_log_bytes_stored"), 10.0);
    assert!(sample(&text, "kiln_log_bytes_received_total") > 10.0);
    assert_eq!(sample(&text, "kiln_assignment_latency_seconds_count"), 1.0);
    assert_eq!(sample(&text, "kiln_requirement_classes"), 1.0);
    let arm = text
        .lines()
        .find(|l| l.starts_with("kiln_pending_work_requests{") && l.contains("architecture=\"arm64\""))
        .expect("a class line for arm64");
    assert!(arm.ends_with(" 2"), "{arm}");
    assert_eq!(
        sample(&text, "kiln_http_requests_total{route=\"/api/1/work-requests\",method=\"POST\",status=\"201\"}"),
        3.0
    );
    assert_eq!(
        sample(&text, "kiln_http_requests_total{route=\"/api/1/work-requests/{id}\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    for family in ["kiln_work_requests", "kiln_assignment_latency_seconds", "kiln_http_requests_total"] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} typed");
    }

    finish(&worker, &got, WorkResult::Success).await;
    let samples = k.json(&["metrics"]).await;
    let busy = samples.as_array().expect("samples").iter().find(|s| s["name"] == "kiln_workers_busy").cloned();
    assert_eq!(busy.map(|s| s["value"].clone()), Some(Value::from(0.0)));

    // A token is needed, any valid one: a worker's will do.
    Kiln::new(&c.url, None).run(&["metrics"]).await.expect_code(77);
    let resp = worker.request(reqwest::Method::GET, "/metrics").send().await.expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain; version=0.0.4"));
}

#[tokio::test]
async fn metrics_public_lets_anyone_scrape() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("coordinator.toml");
    std::fs::write(&config, "metrics_public = true\n").expect("write");
    let c = Coordinator::start_with(&["--config", config.to_str().expect("utf-8")]);
    let text = Kiln::new(&c.url, None).run(&["metrics"]).await.ok().stdout;
    assert!(text.contains("kiln_build_info{version="), "{text}");
}

#[tokio::test]
async fn health_help_version_completions_and_man_page() {
    let c = Coordinator::start();
    let k = Kiln::new(&c.url, None);
    assert!(k.run(&["health"]).await.ok().stdout.contains(": ok"));
    assert_eq!(k.json(&["health"]).await, json!({"status": "ok"}));

    let home = tempfile::tempdir().expect("home");
    let run = |args: &'static [&'static str]| {
        let mut cmd = bare(home.path());
        cmd.args(args);
        output(cmd)
    };
    let help = run(&["--help"]).await.ok().stdout;
    assert!(help.contains("submit") && help.contains("Exit codes:") && help.contains("KILN_SERVER"), "{help}");
    assert!(run(&["--version"]).await.ok().stdout.starts_with("kiln "));
    let usage = run(&["submit"]).await.expect_code(64);
    assert!(usage.stderr.contains("Usage:"), "{}", usage.stderr);
    run(&["no-such-verb"]).await.expect_code(64);

    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef kiln"), ("fish", "complete -c kiln")] {
        let mut cmd = bare(home.path());
        cmd.args(["completions", shell]);
        let script = output(cmd).await.ok().stdout;
        assert!(script.contains(marker) && script.contains("submit"), "{shell}: {marker}");
    }
    let man = run(&["manpage"]).await.ok().stdout;
    assert!(man.contains(".TH kiln 1") && man.contains("submit"), "{}", &man[..man.len().min(400)]);
    let dir = tempfile::tempdir().expect("man dir");
    let mut cmd = bare(home.path());
    cmd.args(["manpage", "--dir", dir.path().to_str().expect("utf-8")]);
    output(cmd).await.ok();
    for page in ["kiln.1", "kiln-submit.1", "kiln-artifact-upload.1", "kiln-workers.1"] {
        assert!(dir.path().join(page).exists(), "{page} written");
    }
}
