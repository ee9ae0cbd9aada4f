//! The `limits:*` keys (Kiln addition): which per-task limits this host can
//! enforce, found by trying them (see [`crate::cgroup::probe_enforceable`]).

use super::run::find_on_path;
use crate::cgroup;
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::path::Path;

/// `"v1"`, `"v2"`, `"hybrid"` or `"none"`: the cgroups limits are enforced with.
pub const CGROUP: &str = "limits:cgroup";
pub const MEMORY: &str = "limits:memory";
pub const PIDS: &str = "limits:pids";
pub const CPU: &str = "limits:cpu";
/// Can a task's writable layer get a size quota (a loop-mounted ext4)?
pub const DISK_QUOTA: &str = "limits:disk_quota";

pub(crate) fn probe_into(
    map: &mut Map<String, Value>,
    proc_root: &Path,
    sys_root: &Path,
    dev_root: &Path,
    path_var: &OsStr,
) {
    let enforceable = cgroup::detect(proc_root, sys_root).enforceable();
    map.insert(CGROUP.into(), Value::String(enforceable.version));
    map.insert(MEMORY.into(), Value::Bool(enforceable.memory));
    map.insert(PIDS.into(), Value::Bool(enforceable.pids));
    map.insert(CPU.into(), Value::Bool(enforceable.cpu));
    map.insert(DISK_QUOTA.into(), Value::Bool(disk_quota(dev_root, path_var)));
}

/// The unshare backend sizes a task's writable layer with an ext4 image on
/// a loop device: that needs `/dev/loop-control` and `mkfs.ext4`.
pub(crate) fn disk_quota(dev_root: &Path, path_var: &OsStr) -> bool {
    dev_root.join("loop-control").exists() && find_on_path("mkfs.ext4", path_var).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::run::tests::script;

    #[test]
    fn fixture_cgroups_are_never_enforceable() {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_self = root.path().join("proc/self");
        std::fs::create_dir_all(&proc_self).expect("mkdir");
        std::fs::write(
            proc_self.join("mountinfo"),
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .expect("write");
        std::fs::write(proc_self.join("cgroup"), "4:memory:/agent\n").expect("write");
        std::fs::create_dir_all(root.path().join("sys/fs/cgroup/memory/agent")).expect("mkdir");
        let mut map = Map::new();
        let (proc_root, sys_root) = (root.path().join("proc"), root.path().join("sys"));
        probe_into(&mut map, &proc_root, &sys_root, root.path(), OsStr::new(""));
        // Present in the fixture, but a plain directory accepts no limits.
        assert_eq!(map.get(CGROUP), Some(&Value::String("none".into())));
        assert_eq!(map.get(MEMORY), Some(&Value::Bool(false)));
        assert_eq!(map.get(DISK_QUOTA), Some(&Value::Bool(false)));
    }

    #[test]
    fn disk_quota_needs_loop_devices_and_mkfs() {
        let dev = tempfile::tempdir().expect("tempdir");
        let bin = tempfile::tempdir().expect("tempdir");
        assert!(!disk_quota(dev.path(), bin.path().as_os_str()));
        std::fs::write(dev.path().join("loop-control"), "").expect("write");
        assert!(!disk_quota(dev.path(), bin.path().as_os_str()), "no mkfs.ext4 yet");
        script(bin.path(), "mkfs.ext4", "true");
        assert!(disk_quota(dev.path(), bin.path().as_os_str()));
    }
}
