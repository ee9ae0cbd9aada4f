//! The Debian packages and systemd units (packaging/, systemd/). The
//! packages are built from the binaries this test run uses (no second
//! compilation), checked with lintian, then installed into a clean Debian
//! bookworm Incus container with systemd as PID 1, where
//! packaging/test-in-container starts the services, runs a task across a
//! restart of kiln-agent.service and purges them again.

use kiln_tests::images::busybox_rootfs;
use kiln_tests::{bin_dir, require_incus};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Run `cmd`, echo what it printed, panic with `what` when it fails.
fn run(what: &str, cmd: &mut Command) -> String {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: failed to run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {what} ({:.1} s) ---\n{stdout}{stderr}", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout
}

/// The exposure level `systemd-analyze security` gives `unit`.
fn exposure(unit: &Path) -> f64 {
    let out = run(
        "systemd-analyze security",
        Command::new("systemd-analyze").arg("security").arg("--offline=true").arg(unit),
    );
    let line = out.lines().find(|l| l.contains("Overall exposure level")).expect("an overall exposure line");
    let value = line.rsplit(':').next().and_then(|v| v.split_whitespace().next()).expect("a value");
    value.parse().unwrap_or_else(|e| panic!("exposure {value:?}: {e}"))
}

#[test]
fn the_coordinator_and_signing_units_are_confined() {
    let units = workspace_root().join("systemd");
    for unit in ["kiln-coordinator.service", "kiln-signing.service"] {
        let score = exposure(&units.join(unit));
        assert!(score <= 2.0, "{unit}: exposure level {score} > 2.0");
    }
    // The agent cannot be confined like that (namespaces, mounts, cgroups),
    // but it keeps its capability bounding set and read-only system.
    let agent = std::fs::read_to_string(units.join("kiln-agent.service")).expect("read the agent's unit");
    for line in ["ProtectSystem=strict", "CapabilityBoundingSet=CAP_", "Type=notify", "KillMode=mixed"] {
        assert!(agent.lines().any(|l| l.starts_with(line)), "kiln-agent.service lacks {line}");
    }
}

#[test]
fn packages_build_pass_lintian_and_run_work_under_systemd_in_a_container() {
    require_incus!();
    let root = workspace_root();
    let debs = tempfile::tempdir().expect("temp dir");
    run("packaging/build", Command::new(root.join("packaging/build")).arg(debs.path()).env("KILN_BIN_DIR", bin_dir()));
    let mut built: Vec<String> = std::fs::read_dir(debs.path())
        .expect("list the packages")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".deb"))
        .map(|n| n.split('_').next().unwrap_or_default().to_owned())
        .collect();
    built.sort();
    assert_eq!(built, ["kiln-agent", "kiln-client", "kiln-coordinator", "kiln-signing"]);

    let changes = std::fs::read_dir(debs.path())
        .expect("list the packages")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "changes"))
        .expect("a .changes file");
    // lintian exits non-zero on errors (E:); warnings are shown, not fatal.
    let report = run("lintian", Command::new("lintian").arg("--tag-display-limit").arg("0").arg(&changes));
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));

    let out = run(
        "packaging/test-in-container",
        Command::new(root.join("packaging/test-in-container")).arg(debs.path()).arg(busybox_rootfs()),
    );
    assert!(out.contains("PACKAGING-TEST-PASSED"), "the container test did not reach its end:\n{out}");
}
