//! `kiln-agent probe-backend NAME`: establish that a backend really works
//! by running a trivial task in it. The unshare probe builds a throwaway
//! root that binds the host's /usr read-only and runs `true` in a full
//! sandbox (namespaces, id maps, cgroup, overlay, pivot_root).

use crate::sandbox::spec::{self, SandboxParams};
use crate::supervisor::task_dir::{Outcome, TaskDir};
use anyhow::Context as _;

/// Exit 0 when `backend` works, printing extra metadata as
/// `executor:<backend>:<key>=<JSON>` lines on stdout; otherwise exit 1 with
/// the reason as the last line on stderr. With `image` (qemu): boot that
/// stored system image under KVM and print the verdict as JSON. `quick`:
/// the backend's quick re-check ([`crate::backends::Backend::probe_quick`]).
pub fn run(backend: &str, quick: bool, image: Option<&std::path::Path>) -> anyhow::Result<i32> {
    if let Some(dir) = image {
        println!("{}", serde_json::to_string(&crate::backends::qemu::store::probe_accel(dir))?);
        return Ok(0);
    }
    let Some(b) = crate::backends::by_name(backend) else {
        eprintln!("unknown backend {backend:?}");
        return Ok(1);
    };
    match if quick { b.probe_quick() } else { b.probe() } {
        Ok(extra) => {
            for (key, value) in extra {
                println!("{key}={value}");
            }
            Ok(0)
        }
        Err(reason) => {
            eprintln!("{reason}");
            Ok(1)
        }
    }
}

/// The unshare probe: `true` in a full sandbox; why not when it fails.
pub fn unshare_works() -> Result<(), String> {
    unshare().map_err(|e| format!("{e:#}"))
}

fn unshare() -> anyhow::Result<()> {
    let work =
        tempfile::Builder::new().prefix("kiln-probe-").tempdir().context("failed to create a probe directory")?;
    let lower = work.path().join("lower");
    for dir in ["usr", "etc", "root", "tmp", "proc", "dev"] {
        std::fs::create_dir_all(lower.join(dir)).context("failed to build the probe root")?;
    }
    for (link, to) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")] {
        std::os::unix::fs::symlink(to, lower.join(link)).context("failed to build the probe root")?;
    }
    let task = TaskDir::new(work.path().join("task"));
    std::fs::create_dir_all(&task.path)?;
    let params = SandboxParams {
        lower,
        rootfs: crate::sandbox::runtime_paths(&crate::supervisor::shim::cgroup_name(&task.path)).0,
        output: task.output(),
        output_mount: crate::sandbox::runtime_paths(&crate::supervisor::shim::cgroup_name(&task.path)).1,
        args: vec!["/usr/bin/true".into()],
        env: Vec::new(),
        network: false,
        memory: 256 << 20,
        pids: 64,
        cpus: 0.0,
        disk_quota: None,
        tmp_size: 1 << 20,
        timeout_secs: 20,
        notice: None,
        controllers: None,
    };
    let mut spec = spec::build(&params)?;
    spec::add_readonly_bind(&mut spec, "/usr", "/usr")?;
    spec::save(&spec, &task.path)?;
    let code = crate::supervisor::shim::supervise_here(&task.path);
    let status = task.read_status()?;
    match status {
        Some(s) if code == 0 && s.outcome == Outcome::Exited && s.exit_code == Some(0) => Ok(()),
        Some(s) => {
            let log = std::fs::read_to_string(task.log()).unwrap_or_default();
            let reason =
                s.setup_error.unwrap_or_else(|| format!("the probe task ended {:?} with {:?}", s.outcome, s.exit_code));
            eprintln!("{log}");
            anyhow::bail!("{}", reason.lines().last().unwrap_or("unknown failure"))
        }
        None => anyhow::bail!("the probe's shim wrote no status"),
    }
}
