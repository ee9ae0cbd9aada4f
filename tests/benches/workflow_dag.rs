//! A 10,000-node matrix-style DAG driven to the end: one `matrix` workflow
//! of 10,000 worker `noop` targets, its synchronization point and its
//! `aggregate_results` summary, against the baseline of the same 10,000
//! noops submitted as independent requests. Real coordinator binary, real
//! SQLite, workers played over HTTP by this process (8 of them, one slot
//! each). Reports wall time per phase and the coordinator's resident set.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench workflow_dag`

use kiln_shared::client::{Client, WorkRequestFilter};
use kiln_shared::work::{Completion, NewWorkRequest};
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use kiln_tests::work::noop;
use kiln_tests::{amd64_metadata, enrolled_worker, obj, Coordinator};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 10_000;
const WORKERS: usize = 8;
const SUBMITTERS: usize = 8;
const _: () = assert!(NODES.is_multiple_of(SUBMITTERS), "submitters share the work evenly");

/// A `/proc/<pid>/status` field in MiB (`VmRSS`, `VmHWM`).
fn mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field");
    kib / 1024.0
}

async fn workers(c: &Coordinator) -> Vec<Client> {
    let mut all = Vec::new();
    for i in 0..WORKERS {
        all.push(enrolled_worker(c, &format!("w{i}"), amd64_metadata()).await);
    }
    all
}

/// Workers that take and complete noops until `total` are done.
async fn drive(workers: Vec<Client>, total: usize) -> Duration {
    let start = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        let done = done.clone();
        tasks.spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let Some(wr) = worker.next(Duration::from_secs(1)).await.expect("next") else { continue };
                let ok = Completion { result: WorkResult::Success, attempt: Some(wr.attempt), output_data: None };
                worker.complete(wr.id, &ok).await.expect("complete");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Workers still long-polling when the last one is done are not waited for.
    while done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    tasks.abort_all();
    took
}

async fn wait_final(user: &Client, id: i64) -> kiln_shared::work::WorkRequest {
    loop {
        let wr = user.work_request(id).await.expect("read");
        if wr.status.is_final() {
            return wr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Figures {
    /// Resident set once the requests exist, and once the workers are done.
    submitted_mib: f64,
    driven_mib: f64,
    submit: Duration,
    drive: Duration,
    finish: Duration,
    total: Duration,
    idle_mib: f64,
    peak_mib: f64,
    end_mib: f64,
}

async fn baseline() -> Figures {
    let c = Coordinator::start();
    let user = c.user("bench");
    let workers = workers(&c).await;
    let pid = c.pid().expect("the coordinator runs");
    let idle_mib = mib(pid, "VmRSS");
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        let user = user.clone();
        let count = NODES / SUBMITTERS;
        tasks.spawn(async move {
            for _ in 0..count {
                user.create_work_request(&noop(&[])).await.expect("noop");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let submit = start.elapsed();
    let submitted_mib = mib(pid, "VmRSS");
    let drive = drive(workers, NODES).await;
    let driven_mib = mib(pid, "VmRSS");
    let total = start.elapsed();
    // VmHWM: the highest resident set this coordinator process ever had.
    let (peak_mib, end_mib) = (mib(pid, "VmHWM"), mib(pid, "VmRSS"));
    Figures { submitted_mib, driven_mib, submit, drive, finish: Duration::ZERO, total, idle_mib, peak_mib, end_mib }
}

async fn workflow() -> Figures {
    let c = Coordinator::start();
    let user = c.user("bench");
    let workers = workers(&c).await;
    let pid = c.pid().expect("the coordinator runs");
    let idle_mib = mib(pid, "VmRSS");
    let targets: Vec<Value> = (0..NODES).map(|_| json!({"architecture": "amd64"})).collect();
    let start = Instant::now();
    let wf = NewWorkRequest {
        task_type: TaskType::Workflow,
        task_name: "matrix".into(),
        task_data: obj(json!({"task": "noop", "targets": targets})),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    };
    let wf = user.create_work_request(&wf).await.expect("matrix");
    // Populated once its newest child is the summary step.
    loop {
        let filter = WorkRequestFilter { parent: Some(wf.id), limit: Some(1), ..Default::default() };
        let newest = user.work_requests(&filter).await.expect("children").items;
        if newest.first().is_some_and(|k| k.task_name == "aggregate_results") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let submit = start.elapsed();
    let submitted_mib = mib(pid, "VmRSS");
    let drive = drive(workers, NODES).await;
    let driven_mib = mib(pid, "VmRSS");
    let before_finish = Instant::now();
    let done = wait_final(&user, wf.id).await;
    let finish = before_finish.elapsed();
    let total = start.elapsed();
    assert_eq!((done.status, done.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    let filter = WorkRequestFilter { parent: Some(wf.id), limit: Some(1), ..Default::default() };
    let aggregate = user.work_requests(&filter).await.expect("children").items.remove(0);
    let summary = user.artifact(aggregate.output_data["artifacts"][0].as_i64().expect("id")).await.expect("summary");
    assert_eq!(summary.data["counts"], json!({"success": NODES}));
    // VmHWM: the highest resident set this coordinator process ever had.
    let (peak_mib, end_mib) = (mib(pid, "VmHWM"), mib(pid, "VmRSS"));
    println!(
        "workflow case at the end: RssAnon {:.1} MiB, RssFile {:.1} MiB, RssShmem {:.1} MiB, {} threads",
        mib(pid, "RssAnon"),
        mib(pid, "RssFile"),
        mib(pid, "RssShmem"),
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_owned())))
            .unwrap_or_default()
    );
    Figures { submitted_mib, driven_mib, submit, drive, finish, total, idle_mib, peak_mib, end_mib }
}

#[tokio::main]
async fn main() {
    let base = baseline().await;
    let wf = workflow().await;
    let s = |d: Duration| d.as_secs_f64();
    println!("{NODES} noop nodes, {WORKERS} HTTP workers (1 slot each), real coordinator + SQLite");
    println!("{:<38} {:>8} {:>8} {:>8} {:>8}", "wall time", "submit s", "drive s", "finish s", "total s");
    for (name, f) in [("10,000 independent noops (baseline)", &base), ("matrix workflow of 10,000 noops", &wf)] {
        println!("{name:<38} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", s(f.submit), s(f.drive), s(f.finish), s(f.total));
    }
    println!(
        "{:<38} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "coordinator RSS MiB", "idle", "submitted", "driven", "end", "peak"
    );
    for (name, f) in [("10,000 independent noops (baseline)", &base), ("matrix workflow of 10,000 noops", &wf)] {
        println!(
            "{name:<38} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1}",
            f.idle_mib, f.submitted_mib, f.driven_mib, f.end_mib, f.peak_mib
        );
    }
    println!(
        "ratio workflow/baseline: total {:.2}x, peak RSS {:.2}x; completions/s: baseline {:.0}, workflow {:.0}",
        s(wf.total) / s(base.total),
        wf.peak_mib / base.peak_mib,
        NODES as f64 / s(base.drive),
        NODES as f64 / s(wf.drive)
    );
}
