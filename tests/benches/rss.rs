//! Coordinator memory: resident set size idle, with 100,000 work requests
//! stored (all pending, so all of them sit in the scheduler's index too),
//! and after a restart on that data (the index rebuilt from the store).
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench rss`

use kiln_shared::client::Client;
use kiln_tests::work::{noop, with_data};
use kiln_tests::Coordinator;
use serde_json::json;
use std::time::{Duration, Instant};

const STORED: usize = 100_000;
const SUBMITTERS: usize = 16;
const _: () = assert!(STORED.is_multiple_of(SUBMITTERS), "submitters share the work evenly");

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

async fn fill(user: &Client) -> Duration {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..SUBMITTERS {
        let user = user.clone();
        let count = STORED / SUBMITTERS;
        tasks.spawn(async move {
            for i in 0..count {
                // 100 requirement classes, none of which an agent here runs.
                let arch = format!("arch{:02}", (part * count + i) % 100);
                user.create_work_request(&with_data(noop(&[]), json!({"host_architecture": arch})))
                    .await
                    .expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("submitter");
    }
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let mut c = Coordinator::start();
    let user = c.user("bench");
    user.health().await.expect("health");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(c.pid().expect("the coordinator runs"));
    let took = fill(&user).await;
    let loaded = rss_mib(c.pid().expect("the coordinator runs"));
    c.kill_and_restart();
    user.health().await.expect("health after restart");
    let restarted = rss_mib(c.pid().expect("the coordinator runs"));
    let db = std::fs::metadata(c.data_dir.path().join("kiln.sqlite3")).map(|m| m.len()).unwrap_or(0);
    println!("coordinator resident set size (VmRSS)");
    println!("idle (fresh data dir):                  {idle:>7.1} MiB");
    println!(
        "{STORED} requests stored, all pending:    {loaded:>7.1} MiB  (created in {:.1} s, {:.0}/s)",
        took.as_secs_f64(),
        STORED as f64 / took.as_secs_f64()
    );
    println!("same, after a restart (index rebuilt):  {restarted:>7.1} MiB");
    println!("database file: {:.1} MiB", db as f64 / (1024.0 * 1024.0));
}
