//! How often the incus-lxc probe touches Incus: the full probe (at start,
//! every 10 minutes) runs a trial container, the agent's quick re-check
//! every minute creates nothing. Seen through Incus's own lifecycle events.

use kiln_tests::require_incus;
use serde_json::Value;
use std::time::Duration;

/// The Incus lifecycle events of `kiln-agent probe-backend incus-lxc ARGS`'s
/// trial containers (named after the probe's pid), seen by `incus monitor`.
fn trial_events(args: &[&str]) -> Vec<String> {
    let mut monitor = std::process::Command::new("incus")
        .args(["monitor", "--type=lifecycle", "--all-projects", "--format=json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("incus monitor");
    std::thread::sleep(Duration::from_millis(500)); // subscribed before the probe starts
    let probe = std::process::Command::new(kiln_tests::binary("kiln-agent"))
        .args(["probe-backend", "incus-lxc"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("probe");
    let pid = probe.id();
    let out = probe.wait_with_output().expect("probe output");
    assert!(out.status.success(), "probe-backend incus-lxc {args:?} failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("executor:incus-lxc:network="), "extra keys reported");
    std::thread::sleep(Duration::from_millis(500)); // the last events arrive
    let _ = monitor.kill();
    let events = monitor.wait_with_output().expect("monitor output");
    let name = format!("kiln-probe-{pid}-");
    serde_json::Deserializer::from_slice(&events.stdout)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .filter(|event| event["metadata"]["source"].as_str().is_some_and(|s| s.contains(&name)))
        .filter_map(|event| event["metadata"]["action"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_periodic_quick_probe_starts_no_trial_container_and_the_full_one_does() {
    require_incus!();
    let full = trial_events(&[]);
    assert!(full.iter().any(|a| a == "instance-created"), "a full probe runs a trial container: {full:?}");
    assert!(full.iter().any(|a| a == "instance-deleted"), "and removes it: {full:?}");
    let quick = trial_events(&["--quick"]);
    assert!(quick.is_empty(), "the quick re-check creates nothing in Incus: {quick:?}");
}
