//! One task's cgroup: a directory per hierarchy (one under v2, up to three
//! under v1), created with its limits or reopened after an agent restart.

use super::{fsutil, CgroupError, CgroupLayout, CgroupLimits, Controller, Version};
use std::path::{Path, PathBuf};

/// cfs / `cpu.max` period, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas under 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// A task's cgroup. Dropping it leaves the cgroup in place (it outlives
/// agent restarts); [`TaskCgroup::remove`] deletes it.
#[derive(Debug)]
pub struct TaskCgroup {
    name: String,
    dirs: Vec<TaskDir>,
}

/// One directory of the task cgroup and the controllers it carries.
#[derive(Debug, Clone)]
pub(crate) struct TaskDir {
    pub(crate) path: PathBuf,
    pub(crate) version: Version,
    pub(crate) controllers: Vec<Controller>,
}

impl TaskCgroup {
    /// Creates `<mount>/<own cgroup>/kiln/<name>` in every hierarchy of
    /// `layout` and applies `limits`. Fails when a limit's controller is not
    /// in `layout` or the cgroup already exists; on failure nothing is left.
    pub fn create(layout: &CgroupLayout, name: &str, limits: &CgroupLimits) -> Result<TaskCgroup, CgroupError> {
        check_name(name)?;
        check_limits(limits)?;
        if let Some(controller) = limits.controllers().into_iter().find(|c| layout.placement(*c).is_none()) {
            return Err(CgroupError::ControllerMissing { controller });
        }
        let dirs = plan(layout, name);
        if dirs.is_empty() {
            return Err(CgroupError::NoControllers { name: name.to_owned() });
        }
        let mut created = Vec::new();
        for dir in &dirs {
            let result = make_dir(dir).and_then(|()| {
                created.push(dir.path.clone());
                apply_limits(dir, limits)
            });
            if let Err(e) = result {
                return Err(CgroupError::with_cleanup(e, fsutil::rmdir_all(&created)));
            }
        }
        Ok(TaskCgroup { name: name.to_owned(), dirs })
    }

    /// Re-attaches to task cgroup `name` created earlier (by this or a
    /// previous agent process), in those hierarchies where it still exists.
    pub fn open(layout: &CgroupLayout, name: &str) -> Result<TaskCgroup, CgroupError> {
        check_name(name)?;
        let (dirs, missing): (Vec<TaskDir>, Vec<TaskDir>) =
            plan(layout, name).into_iter().partition(|d| d.path.is_dir());
        if dirs.is_empty() {
            return Err(CgroupError::NotFound {
                name: name.to_owned(),
                paths: missing.into_iter().map(|d| d.path).collect(),
            });
        }
        Ok(TaskCgroup { name: name.to_owned(), dirs })
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directories, one per hierarchy.
    pub fn paths(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.path.as_path()).collect()
    }

    /// Moves process `pid`, all its threads, into every directory of the
    /// task cgroup; its children forked afterwards follow it.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::InvalidPid(pid));
        }
        let pid = pid.to_string();
        self.dirs.iter().try_for_each(|d| fsutil::write(&d.path.join("cgroup.procs"), &pid))
    }

    /// The processes in the task cgroup, sorted; unreadable directories
    /// (logged) count as empty.
    pub fn pids(&self) -> Vec<i32> {
        self.read_pids().unwrap_or_else(|e| {
            tracing::warn!(cgroup = %self.name, error = %e, "failed to list the task cgroup's processes");
            Vec::new()
        })
    }

    pub(crate) fn read_pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = Vec::new();
        for dir in &self.dirs {
            match fsutil::read_pids(&dir.path.join("cgroup.procs")) {
                Ok(pids) => all.extend(pids),
                // Already removed in this hierarchy: nothing left in it.
                Err(CgroupError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    pub(crate) fn dirs(&self) -> &[TaskDir] {
        &self.dirs
    }

    /// The directory that carries `controller`, if any.
    pub(crate) fn dir_of(&self, controller: Controller) -> Option<&TaskDir> {
        self.dirs.iter().find(|d| d.controllers.contains(&controller))
    }
}

/// Task names become one directory name: no separators, no dot files (the
/// kernel's own files are `cgroup.*`, and `.`/`..` would escape).
fn check_name(name: &str) -> Result<(), CgroupError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidName(name.to_owned()))
    }
}

fn check_limits(limits: &CgroupLimits) -> Result<(), CgroupError> {
    match limits.cpus {
        Some(cpus) if !(0.0..=1e6).contains(&cpus) => {
            Err(CgroupError::InvalidLimit(format!("cpus = {cpus} (use 0 for no limit, or a positive number)")))
        }
        _ => Ok(()),
    }
}

/// One [`TaskDir`] per distinct directory: v1 hierarchies may co-mount
/// controllers, and under v2 all three share one directory.
pub(crate) fn plan(layout: &CgroupLayout, name: &str) -> Vec<TaskDir> {
    let mut dirs: Vec<TaskDir> = Vec::new();
    for controller in Controller::ALL {
        let Some(placement) = layout.placement(controller) else { continue };
        let path = placement.task_dir(name);
        match dirs.iter_mut().find(|d| d.path == path) {
            Some(dir) => dir.controllers.push(controller),
            None => dirs.push(TaskDir { path, version: placement.version, controllers: vec![controller] }),
        }
    }
    dirs
}

/// Creates `kiln/` if needed (under v2 handing it the controllers: a cgroup
/// only gets those enabled in its parent's `cgroup.subtree_control`), then
/// the task directory itself.
fn make_dir(dir: &TaskDir) -> Result<(), CgroupError> {
    let missing_parent = || CgroupError::Create {
        path: dir.path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no parent directory"),
    };
    let kiln = dir.path.parent().ok_or_else(missing_parent)?;
    let own = kiln.parent().ok_or_else(missing_parent)?;
    if dir.version == Version::V2 {
        enable_controllers(own, &dir.controllers)?;
        fsutil::mkdir_if_missing(kiln)?;
        enable_controllers(kiln, &dir.controllers)?;
    } else {
        fsutil::mkdir_if_missing(kiln)?;
    }
    fsutil::mkdir(&dir.path)
}

// Ref: https://docs.kernel.org/admin-guide/cgroup-v2.html#enabling-and-disabling
// Writing fails with EBUSY when `cgroup` itself holds processes (the "no
// internal processes" rule), unless it is the root.
fn enable_controllers(cgroup: &Path, controllers: &[Controller]) -> Result<(), CgroupError> {
    let file = cgroup.join("cgroup.subtree_control");
    let enabled = fsutil::read_words(&file)?;
    for controller in controllers {
        if !enabled.iter().any(|c| c == controller.name()) {
            fsutil::write(&file, &format!("+{}", controller.name()))?;
        }
    }
    Ok(())
}

fn apply_limits(dir: &TaskDir, limits: &CgroupLimits) -> Result<(), CgroupError> {
    let file = |name: &str| dir.path.join(name);
    let v2 = dir.version == Version::V2;
    for controller in &dir.controllers {
        match controller {
            Controller::Memory => {
                let Some(bytes) = limits.memory else { continue };
                let bytes = bytes.to_string();
                if v2 {
                    fsutil::write(&file("memory.max"), &bytes)?;
                    // Swap would let a task dodge its limit.
                    write_if_present(&file("memory.swap.max"), "0")?;
                } else {
                    // memory.limit_in_bytes first: memsw may never be below it.
                    fsutil::write(&file("memory.limit_in_bytes"), &bytes)?;
                    write_if_present(&file("memory.memsw.limit_in_bytes"), &bytes)?;
                }
            }
            Controller::Pids => {
                let Some(pids) = limits.pids else { continue };
                fsutil::write(&file("pids.max"), &pids.to_string())?;
            }
            Controller::Cpu => {
                let Some(cpus) = limits.cpus.filter(|c| *c > 0.0) else { continue };
                let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(CPU_MIN_QUOTA_US);
                if v2 {
                    fsutil::write(&file("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                } else {
                    fsutil::write(&file("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    fsutil::write(&file("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// The kernel only creates some files with some options (memsw with swap
/// accounting, `memory.swap.max` with swap); their absence is not an error.
fn write_if_present(path: &Path, value: &str) -> Result<(), CgroupError> {
    if path.exists() {
        fsutil::write(path, value)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Placement;

    fn v1(root: &Path, mount: &str) -> Option<Placement> {
        Some(Placement { version: Version::V1, mount: root.join(mount), own_path: "agent".into() })
    }

    #[test]
    fn one_directory_per_hierarchy() {
        let root = Path::new("/fixture");
        let comounted = CgroupLayout {
            memory: v1(root, "memory"),
            pids: v1(root, "cpu,pids"),
            cpu: v1(root, "cpu,pids"),
            unified: None,
        };
        let dirs = plan(&comounted, "wr-7");
        assert_eq!(dirs.len(), 2);
        assert_eq!(dirs[0].path, Path::new("/fixture/memory/agent/kiln/wr-7"));
        assert_eq!(dirs[1].controllers, [Controller::Pids, Controller::Cpu]);
        let v2 = Placement { version: Version::V2, mount: root.into(), own_path: "svc".into() };
        let unified = CgroupLayout { memory: Some(v2.clone()), pids: Some(v2.clone()), cpu: Some(v2), unified: None };
        let dirs = plan(&unified, "wr-7");
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].controllers, Controller::ALL);
    }

    #[test]
    fn refuses_bad_names_limits_and_missing_controllers() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = CgroupLayout { memory: v1(root.path(), "memory"), ..CgroupLayout::default() };
        let none = CgroupLimits::default();
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "cgroup procs"] {
            assert!(matches!(TaskCgroup::create(&layout, bad, &none), Err(CgroupError::InvalidName(_))), "{bad:?}");
        }
        let cpus = |c| CgroupLimits { cpus: Some(c), ..CgroupLimits::default() };
        assert!(matches!(TaskCgroup::create(&layout, "t", &cpus(-1.0)), Err(CgroupError::InvalidLimit(_))));
        assert!(matches!(TaskCgroup::create(&layout, "t", &cpus(f64::NAN)), Err(CgroupError::InvalidLimit(_))));
        let err = TaskCgroup::create(&layout, "t", &cpus(2.0)).expect_err("no cpu controller");
        assert!(matches!(err, CgroupError::ControllerMissing { controller: Controller::Cpu }), "{err}");
        assert_eq!(cpus(0.0).controllers(), [], "0 CPUs means no limit");
        let err = TaskCgroup::create(&CgroupLayout::default(), "t", &none).expect_err("no controllers");
        assert!(matches!(err, CgroupError::NoControllers { .. }), "{err}");
    }

    #[test]
    fn a_failed_create_leaves_nothing_and_open_names_what_it_looked_for() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = CgroupLayout { memory: v1(root.path(), "memory"), ..CgroupLayout::default() };
        std::fs::create_dir_all(root.path().join("memory/agent")).expect("mkdir");
        let limits = CgroupLimits { memory: Some(1 << 30), ..CgroupLimits::default() };
        let err = TaskCgroup::create(&layout, "wr-1", &limits).expect_err("not a real cgroupfs");
        assert!(err.to_string().contains("memory/agent/kiln/wr-1/memory.limit_in_bytes"), "{err}");
        assert!(!root.path().join("memory/agent/kiln/wr-1").exists());
        let err = TaskCgroup::open(&layout, "wr-1").expect_err("gone");
        assert!(err.to_string().contains("memory/agent/kiln/wr-1"), "{err}");
        std::fs::create_dir_all(root.path().join("memory/agent/kiln/wr-2")).expect("mkdir");
        let reopened = TaskCgroup::open(&layout, "wr-2").expect("open");
        assert_eq!(reopened.name(), "wr-2");
        assert!(reopened.pids().is_empty(), "no cgroup.procs: logged, counted as empty");
        assert!(!reopened.oom_killed());
        assert_eq!(reopened.memory_peak(), None);
    }
}
