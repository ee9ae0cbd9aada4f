//! Task start latency of the unshare backend on a warm cache with a Debian
//! bookworm minbase image: from the agent receiving the assignment to the
//! task's first instruction, side by side with `bwrap --unshare-all` on the
//! same unpacked tree and with Debusine's way (unpack the tarball per task,
//! then `unshare … chroot`). Also the agent's idle RSS and the memory each
//! running task adds (its shim and the sandbox's init processes).
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench task_start`

use chrono::{DateTime, Utc};
use kiln_shared::work::NewWorkRequest;
use kiln_shared::{TaskType, WorkStatus};
use kiln_tests::agent::Agent;
use kiln_tests::images::{debian_minbase, upload_environment};
use kiln_tests::{wait_for, Coordinator};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SAMPLES: usize = 20;

fn now_ns() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn task(env: i64, args: &[&str]) -> NewWorkRequest {
    NewWorkRequest {
        task_type: TaskType::Worker,
        task_name: "command".into(),
        task_data: json!({"environment": env, "backend": "unshare", "command": args})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Timestamps of "assigned id=N" lines in the agent's log.
fn assigned_at(log: &str, id: i64) -> Option<f64> {
    let needle = format!("id={id} ");
    log.lines()
        .map(|l| l.replace('\u{1b}', "").replace("[2m", "").replace("[0m", "").replace("[32m", "").replace("[3m", ""))
        .find(|l| l.contains("assigned") && l.contains(&needle))
        .and_then(|l| DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok())
        .map(|t| t.with_timezone(&Utc).timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9)
}

fn stats(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let p50 = ms[ms.len() / 2];
    let p90 = ms[(ms.len() * 9 / 10).min(ms.len() - 1)];
    println!("{name:<44} {p50:>9.1} {p90:>9.1} {:>9.1}", ms[0]);
    p50
}

fn exec_ts(out: &[u8]) -> f64 {
    String::from_utf8_lossy(out).trim().parse().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let tarball = debian_minbase();
    let c = Coordinator::start();
    let user = c.user("bench");
    let env = upload_environment(&user, &tarball, "amd64").await;
    let agent = Agent::start(&c, "bench", &["--concurrency", "1"]);

    // Kiln: assignment received by the agent -> `date` runs in the sandbox.
    let mut kiln = Vec::new();
    for i in 0..=SAMPLES {
        let wr = user.create_work_request(&task(env, &["/bin/date", "+%s.%N"])).await.expect("create");
        let done = wait_for(Duration::from_secs(300), || async {
            let wr = user.work_request(wr.id).await.ok()?;
            wr.status.is_final().then_some(wr)
        })
        .await
        .expect("task finished");
        assert_eq!(done.status, WorkStatus::Completed);
        let log = user.log(wr.id, false).await.expect("log").text().await.expect("text");
        let exec = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["stream"] == "stdout")
            .and_then(|v| v["text"].as_str()?.parse::<f64>().ok())
            .expect("date output");
        let assigned = assigned_at(&agent.log(), wr.id).expect("assigned line");
        if i > 0 {
            kiln.push((exec - assigned) * 1000.0); // the first run warms the cache
        }
    }
    let cache = agent.data_dir.path().join("cache").join(env.to_string()).join("rootfs");
    assert!(cache.join("bin/date").exists(), "unpacked image at {}", cache.display());

    // bwrap on the same unpacked tree.
    let mut bwrap = Vec::new();
    for _ in 0..SAMPLES {
        let start = now_ns();
        let out = Command::new("bwrap")
            .args(["--unshare-all", "--ro-bind"])
            .arg(&cache)
            .args(["/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/date", "+%s.%N"])
            .output()
            .expect("bwrap");
        bwrap.push((exec_ts(&out.stdout) - start) * 1000.0);
    }

    // Debusine's way: unpack the tarball for the task, then unshare + chroot.
    let mut unpack = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tmp");
        let start = now_ns();
        let ok =
            Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(dir.path()).status().expect("tar").success();
        assert!(ok);
        let out = Command::new("unshare")
            .args(["--mount", "--pid", "--net", "--uts", "--ipc", "--fork", "chroot"])
            .arg(dir.path())
            .args(["/bin/date", "+%s.%N"])
            .output()
            .expect("unshare");
        unpack.push((exec_ts(&out.stdout) - start) * 1000.0);
    }

    println!("task start latency on a warm cache, Debian bookworm minbase ({SAMPLES} samples; unpack: 5)");
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50 ms", "p90 ms", "min ms");
    let k = stats("kiln unshare (assignment received -> exec)", kiln);
    let b = stats("bwrap --unshare-all (spawn -> exec)", bwrap);
    let u = stats("unpack per task + unshare chroot", unpack);
    println!("ratio kiln/bwrap p50: {:.2}x; unpack-per-task/kiln p50: {:.1}x", k / b, u / k);

    // Memory: the idle agent, and what one running task adds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent_pid = agent.pid().expect("agent pid");
    let idle = rss_kib(agent_pid);
    let wr = user.create_work_request(&task(env, &["/bin/sleep", "5"])).await.expect("create");
    let journal = agent.data_dir.path().join("journal");
    let shim_pid = wait_for(Duration::from_secs(60), || async {
        let entry = std::fs::read_dir(&journal)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
        let record: Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
        record["shim"]["pid"].as_u64().map(|p| p as u32)
    })
    .await
    .expect("shim started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let children: Vec<u32> = std::fs::read_to_string(format!("/proc/{shim_pid}/task/{shim_pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let shim = rss_kib(shim_pid);
    let middle: u64 = children.iter().map(|p| rss_kib(*p)).sum();
    let busy = rss_kib(agent_pid);
    let _ = Path::new("");
    println!(
        "agent RSS idle: {:.1} MiB; while running one task: {:.1} MiB",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0
    );
    println!(
        "per running task: shim {:.1} MiB + sandbox helper processes {:.1} MiB (RSS, shared pages counted in each)",
        shim as f64 / 1024.0,
        middle as f64 / 1024.0
    );
    let started = Instant::now();
    wait_for(Duration::from_secs(60), || async {
        user.work_request(wr.id).await.ok()?.status.is_final().then_some(())
    })
    .await;
    let _ = started;
}
