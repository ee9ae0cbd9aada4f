//! Task cgroups on this host, for real: memory and pids limits enforced,
//! OOM kills seen, everything removed afterwards. Needs root and the
//! controllers; otherwise each test prints `SKIPPED-BACKEND: <reason>`.

use kiln_agent::cgroup::{self, CgroupLayout, CgroupLimits, Controller, TaskCgroup};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The host's layout restricted to what works, or why the test cannot run.
fn usable_layout(needs: &[Controller]) -> Result<CgroupLayout, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("cgroup tests need root".into());
    }
    let layout = cgroup::detect(Path::new("/proc"), Path::new("/sys"));
    let enforceable = layout.enforceable();
    if let Some(missing) = needs.iter().find(|c| !enforceable.allows(**c)) {
        return Err(format!("no enforceable {missing} cgroup controller (layout {layout:?})"));
    }
    Ok(layout.restricted_to(&enforceable))
}

macro_rules! layout_or_skip {
    ($($needs:expr),*) => {
        match usable_layout(&[$($needs),*]) {
            Ok(layout) => layout,
            Err(reason) => {
                println!("SKIPPED-BACKEND: {reason}");
                return;
            }
        }
    };
}

fn unique(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

/// Starts `sh -c script` held at a `read` until [`release`], so it can be
/// put in the cgroup before it does anything.
fn spawn_held(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh")
}

fn release(child: &mut Child) {
    child.stdin.take().expect("stdin is piped").write_all(b"go\n").expect("release the child");
}

fn assert_gone(paths: &[std::path::PathBuf]) {
    for path in paths {
        assert!(!path.exists(), "{} is still there", path.display());
    }
}

#[test]
fn memory_limit_kills_the_task_and_is_reported_as_oom() {
    let layout = layout_or_skip!(Controller::Memory);
    let limits = CgroupLimits { memory: Some(64 << 20), ..CgroupLimits::default() };
    let cg = TaskCgroup::create(&layout, &unique("oom"), &limits).expect("create");
    // `tail` keeps its whole input in memory looking for the last lines.
    let mut child = spawn_held("head -c 200M /dev/zero | tail > /dev/null");
    cg.add_pid(child.id() as i32).expect("add pid");
    assert_eq!(cg.pids(), vec![child.id() as i32]);
    release(&mut child);
    let status = child.wait().expect("wait");
    assert!(status.code() == Some(137) || status.signal() == Some(9), "tail should be OOM-killed: {status:?}");
    assert!(cg.oom_killed(), "the cgroup records the OOM kill");
    let peak = cg.memory_peak().expect("peak memory is known");
    assert!(peak > (32 << 20) && peak <= (64 << 20), "peak {peak} is near the 64 MiB limit");
    let paths: Vec<_> = cg.paths().into_iter().map(Path::to_owned).collect();
    cg.remove().expect("remove");
    assert_gone(&paths);
}

#[test]
fn a_task_within_its_memory_limit_is_not_oom_killed() {
    let layout = layout_or_skip!(Controller::Memory);
    let limits = CgroupLimits { memory: Some(64 << 20), ..CgroupLimits::default() };
    let cg = TaskCgroup::create(&layout, &unique("fits"), &limits).expect("create");
    let mut child = spawn_held("head -c 8M /dev/zero | tail > /dev/null");
    cg.add_pid(child.id() as i32).expect("add pid");
    release(&mut child);
    assert!(child.wait().expect("wait").success());
    assert!(!cg.oom_killed());
    cg.remove().expect("remove");
}

#[test]
fn pids_limit_stops_a_fork_bomb_and_kill_all_empties_the_cgroup() {
    let layout = layout_or_skip!(Controller::Pids);
    let limits = CgroupLimits { pids: Some(16), ..CgroupLimits::default() };
    let name = unique("pids");
    let cg = TaskCgroup::create(&layout, &name, &limits).expect("create");
    let mut child = spawn_held("for i in $(seq 50); do sleep 30 & done; wait");
    cg.add_pid(child.id() as i32).expect("add pid");
    release(&mut child);
    let mut most = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        most = most.max(cg.pids().len());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most > 1 && most <= 16, "between 2 and 16 processes, saw {most}");
    // Reopening by name finds the same cgroup (what a restarted agent does).
    let reopened = TaskCgroup::open(&layout, &name).expect("open");
    assert_eq!(reopened.paths(), cg.paths());
    reopened.kill_all().expect("kill_all");
    assert!(cg.pids().is_empty());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("fork"), "the shell could not fork 50 children: {stderr:?}");
    let paths: Vec<_> = cg.paths().into_iter().map(Path::to_owned).collect();
    cg.remove().expect("remove");
    assert_gone(&paths);
    assert!(TaskCgroup::open(&layout, &name).is_err(), "nothing left to reopen");
}

#[test]
fn remove_kills_what_is_still_running() {
    let layout = layout_or_skip!(Controller::Memory);
    let limits = CgroupLimits { memory: Some(256 << 20), pids: Some(64), cpus: Some(0.5) };
    let layout_has = |c| layout.placement(c).is_some();
    let limits = CgroupLimits {
        pids: limits.pids.filter(|_| layout_has(Controller::Pids)),
        cpus: limits.cpus.filter(|_| layout_has(Controller::Cpu)),
        ..limits
    };
    let cg = TaskCgroup::create(&layout, &unique("remove"), &limits).expect("create");
    if let Some(cpu) = layout.placement(Controller::Cpu).filter(|p| p.version == cgroup::Version::V1) {
        let quota = std::fs::read_to_string(cpu.task_dir(cg.name()).join("cpu.cfs_quota_us")).expect("quota");
        assert_eq!(quota.trim(), "50000", "half a CPU of a 100 ms period");
    }
    let mut child = spawn_held("sleep 60 & sleep 60");
    cg.add_pid(child.id() as i32).expect("add pid");
    release(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    assert!(cg.pids().len() >= 2, "sh and its sleeps: {:?}", cg.pids());
    assert!(TaskCgroup::create(&layout, cg.name(), &limits).is_err(), "the name is taken");
    let paths: Vec<_> = cg.paths().into_iter().map(Path::to_owned).collect();
    cg.remove().expect("remove");
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    assert_gone(&paths);
}
