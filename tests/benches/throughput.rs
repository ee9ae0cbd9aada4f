//! End to end over HTTP with SQLite: create 10,000 work requests, then drain
//! them with 50 simulated agents, each looping `POST /api/1/worker/next`
//! then `POST …/complete`. Real coordinator binary, real SQLite on local
//! disk, HTTP over loopback.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench throughput`

use kiln_shared::client::Client;
use kiln_shared::work::Completion;
use kiln_shared::WorkResult;
use kiln_tests::work::noop;
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REQUESTS: usize = 10_000;
const WORKERS: usize = 50;
/// Concurrent submitters (one HTTP client, many connections).
const SUBMITTERS: usize = 16;
const _: () = assert!(REQUESTS.is_multiple_of(SUBMITTERS), "submitters share the work evenly");

async fn submit_all(user: &Client) -> Duration {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        let user = user.clone();
        let count = REQUESTS / SUBMITTERS;
        tasks.spawn(async move {
            for _ in 0..count {
                user.create_work_request(&noop(&[])).await.expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("submitter");
    }
    start.elapsed()
}

/// Every agent takes and completes work until all of it was assigned;
/// returns the time until the last assignment was completed.
async fn drain(workers: Vec<Client>) -> Duration {
    let assigned = Arc::new(AtomicUsize::new(0));
    let finished_at = Arc::new(Mutex::new(None::<Instant>));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        let (assigned, finished_at) = (assigned.clone(), finished_at.clone());
        tasks.spawn(async move {
            while assigned.load(Ordering::SeqCst) < REQUESTS {
                let Some(wr) = worker.next(Duration::from_secs(1)).await.expect("next") else { continue };
                let done = Completion { result: WorkResult::Success, attempt: Some(wr.attempt), output_data: None };
                worker.complete(wr.id, &done).await.expect("complete");
                if assigned.fetch_add(1, Ordering::SeqCst) + 1 == REQUESTS {
                    *finished_at.lock().expect("lock") = Some(Instant::now());
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("agent");
    }
    let end = finished_at.lock().expect("lock").unwrap_or_else(Instant::now);
    end - start
}

#[tokio::main]
async fn main() {
    let c = Coordinator::start();
    let user = c.user("bench");
    let mut workers = Vec::with_capacity(WORKERS);
    for i in 0..WORKERS {
        workers.push(enrolled_worker(&c, &format!("agent-{i:02}"), amd64_metadata()).await);
    }
    let submit = submit_all(&user).await;
    let drained = drain(workers).await;
    let done = user
        .work_requests(&kiln_shared::client::WorkRequestFilter {
            status: Some("completed".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(!done.items.is_empty());
    println!("end to end over HTTP, SQLite store, {REQUESTS} requests");
    println!(
        "submissions: {REQUESTS} in {:.2} s by {SUBMITTERS} concurrent clients: {:.0}/s",
        submit.as_secs_f64(),
        REQUESTS as f64 / submit.as_secs_f64()
    );
    println!(
        "assignments: {REQUESTS} (each next + complete) in {:.2} s by {WORKERS} agents: {:.0}/s",
        drained.as_secs_f64(),
        REQUESTS as f64 / drained.as_secs_f64()
    );
}
