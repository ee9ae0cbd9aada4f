//! The matcher in process: 10,000 pending requests in 200 requirement
//! classes, 1,000 agents polling in turn until the index is drained.
//! Measures assignments per second of the pending index (`take_for`: pick
//! the best class head an agent matches), without HTTP or the store.
//!
//! Run: `cargo bench -p kiln-coordinator --bench matcher`

use kiln_coordinator::scheduler::matcher::AgentView;
use kiln_coordinator::scheduler::queue::PendingQueue;
use kiln_coordinator::scheduler::requirements::Requirements;
use kiln_coordinator::store::PendingEntry;
use kiln_shared::worker::keys;
use kiln_shared::WorkerRole;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

const PENDING: usize = 10_000;
const ARCHES: [&str; 10] =
    ["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "riscv64", "mips64el", "armel", "loong64"];
const TASKS: usize = 20;
const AGENTS: usize = 1_000;
/// Tasks each agent advertises, out of `TASKS`.
const TASKS_PER_AGENT: usize = 5;
const ROUNDS: usize = 5;

fn task(i: usize) -> String {
    format!("task{i:02}")
}

/// 10 architectures x 20 tasks = 200 classes, each needing `unshare`.
fn classes() -> Vec<Requirements> {
    let mut out = Vec::new();
    for arch in ARCHES {
        for t in 0..TASKS {
            let mut req = Requirements::new(WorkerRole::Worker, &task(t), 1);
            req.architecture = Some(arch.to_owned());
            req.backends = vec!["unshare".to_owned()];
            out.push(req);
        }
    }
    out
}

/// An agent of one architecture that runs a few of the tasks.
fn agent_metadata(rng: &mut StdRng, n: usize) -> Map<String, Value> {
    let arch = ARCHES[n % ARCHES.len()];
    let mut md = json!({
        keys::HOST_ARCHITECTURE: arch,
        keys::ARCHITECTURES: [arch],
        keys::TOTAL_MEMORY: 8u64 << 30,
        keys::EXECUTABLES: ["sbuild", "lintian"],
        "executor:unshare:available": true,
        "executor:qemu:available": false,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let mut tasks: Vec<usize> = (0..TASKS).collect();
    tasks.shuffle(rng);
    for t in &tasks[..TASKS_PER_AGENT] {
        md.insert(keys::task_version(&task(*t)), json!(1));
    }
    md
}

fn fill(rng: &mut StdRng, classes: &[Requirements]) -> PendingQueue {
    let mut q = PendingQueue::default();
    for id in 0..PENDING {
        let requirements = classes[id % classes.len()].clone();
        q.insert(PendingEntry { id: id as i64 + 1, priority: rng.gen_range(0..3), requirements });
    }
    q
}

/// Agents poll round-robin until nothing is left that any of them can take.
fn drain(q: &mut PendingQueue, agents: &[Map<String, Value>]) -> (usize, usize, Duration) {
    let (mut assigned, mut polls) = (0, 0);
    let start = Instant::now();
    loop {
        let mut any = false;
        for md in agents {
            polls += 1;
            let view = AgentView { role: WorkerRole::Worker, metadata: md };
            if q.take_for(&view).is_some() {
                assigned += 1;
                any = true;
            }
        }
        if !any {
            return (assigned, polls, start.elapsed());
        }
    }
}

/// Cost of a poll by an agent that matches none of the 200 classes.
fn miss_cost(q: &mut PendingQueue) -> Duration {
    let md = json!({keys::HOST_ARCHITECTURE: "hppa", "task00:version": 1}).as_object().cloned().unwrap_or_default();
    let view = AgentView { role: WorkerRole::Worker, metadata: &md };
    let n = 10_000;
    let start = Instant::now();
    for _ in 0..n {
        assert!(q.take_for(&view).is_none());
    }
    start.elapsed() / n
}

fn main() {
    let mut rng = StdRng::seed_from_u64(42);
    let classes = classes();
    let agents: Vec<_> = (0..AGENTS).map(|n| agent_metadata(&mut rng, n)).collect();
    println!("matcher: {PENDING} pending in {} classes, {AGENTS} agents polling in turn", classes.len());
    let mut rates = Vec::new();
    for round in 1..=ROUNDS {
        let mut q = fill(&mut rng, &classes);
        assert_eq!(q.class_count(), classes.len());
        let miss = miss_cost(&mut q);
        let (assigned, polls, took) = drain(&mut q, &agents);
        let rate = assigned as f64 / took.as_secs_f64();
        rates.push(rate);
        println!(
            "round {round}: {assigned} assigned ({} left unmatchable), {polls} polls in {:.1} ms: {rate:.0} assignments/s, \
             {:.0} polls/s; a poll matching no class: {:.1} us",
            q.len(),
            took.as_secs_f64() * 1e3,
            polls as f64 / took.as_secs_f64(),
            miss.as_secs_f64() * 1e6
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} assignments/s (goal >= 5,000/s)", rates[rates.len() / 2]);
}
