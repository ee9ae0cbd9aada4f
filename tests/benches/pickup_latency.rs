//! Pickup latency: how long from a user's `POST /api/1/work-requests` until
//! a long-polling agent holds the assignment, with no backlog (the baseline)
//! and with 10,000 pending requests nobody can take. Real coordinator
//! binary, real SQLite, HTTP over loopback.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench pickup_latency`

use kiln_shared::client::Client;
use kiln_shared::work::{Completion, NewWorkRequest};
use kiln_shared::{TaskType, WorkResult};
use kiln_tests::work::{noop, with_data};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::json;
use std::time::{Duration, Instant};

const SAMPLES: usize = 200;
const BACKLOG: usize = 10_000;

fn unmatched() -> NewWorkRequest {
    // Needs arm64: the amd64 agent below can never take it.
    with_data(noop(&[]), json!({"host_architecture": "arm64"}))
}

async fn fill_backlog(user: &Client, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..8 {
        let user = user.clone();
        let count = n / 8 + usize::from(part < n % 8);
        tasks.spawn(async move {
            for _ in 0..count {
                user.create_work_request(&unmatched()).await.expect("backlog request");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn measure(backlog: usize) -> Vec<Duration> {
    let c = Coordinator::start();
    let user = c.user("bench");
    fill_backlog(&user, backlog).await;
    let worker = enrolled_worker(&c, "bench-agent", amd64_metadata()).await;
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let poll = {
            let worker = worker.clone();
            tokio::spawn(async move {
                let got = worker.next(Duration::from_secs(30)).await.expect("next");
                (got, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await; // the agent is waiting
        let sent = Instant::now();
        let created = user.create_work_request(&noop(&[])).await.expect("create");
        let (got, at) = poll.await.expect("poll task");
        let got = got.expect("assigned");
        assert_eq!(got.id, created.id);
        samples.push(at - sent);
        let done = Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None };
        worker.complete(got.id, &done).await.expect("complete");
    }
    samples.sort();
    samples
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; a filter argument is ignored.
    let _ = TaskType::Worker;
    let base = measure(0).await;
    let loaded = measure(BACKLOG).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("pickup latency, POST sent -> assignment received, {SAMPLES} samples each");
    println!("{:<28} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
    for (name, s) in [("no backlog (baseline)", &base), ("10,000 unmatched backlog", &loaded)] {
        println!("{name:<28} {:>9.2} {:>9.2} {:>9.2}", ms(pct(s, 0.5)), ms(pct(s, 0.99)), ms(pct(s, 1.0)));
    }
    println!(
        "ratio backlog/baseline: p50 {:.2}x, p99 {:.2}x",
        ms(pct(&loaded, 0.5)) / ms(pct(&base, 0.5)),
        ms(pct(&loaded, 0.99)) / ms(pct(&base, 0.99))
    );
}
