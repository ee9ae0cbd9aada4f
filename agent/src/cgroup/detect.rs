//! Where the memory, pids and cpu controllers are mounted and which cgroup
//! this process is in, from `<proc_root>/self/mountinfo` and
//! `<proc_root>/self/cgroup`. Mount points under `/sys` are looked up under
//! `sys_root`, so tests can describe a v1, v2 or hybrid host with fixtures.

use super::{fsutil, Controller, Version, KILN_DIR};
use std::path::{Path, PathBuf};

/// Where one controller is mounted and this process's cgroup within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub version: Version,
    /// Mount point of the hierarchy, already under `sys_root`.
    pub mount: PathBuf,
    /// This process's cgroup, relative to the mount (empty for the root).
    pub own_path: PathBuf,
}

impl Placement {
    /// This process's own cgroup directory.
    pub fn own_dir(&self) -> PathBuf {
        self.mount.join(&self.own_path)
    }
    /// The directory that holds every task cgroup.
    pub fn kiln_dir(&self) -> PathBuf {
        self.own_dir().join(KILN_DIR)
    }
    /// The directory of task cgroup `name`.
    pub fn task_dir(&self, name: &str) -> PathBuf {
        self.kiln_dir().join(name)
    }
}

/// The cgroup2 mount, even when it holds none of our controllers (hybrid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unified {
    pub mount: PathBuf,
    pub own_path: PathBuf,
    /// Controllers this process's cgroup can give its children (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Those already given (`cgroup.subtree_control`).
    pub subtree_control: Vec<String>,
}

/// Where each controller is, as far as mounts and `/proc/self/cgroup` say;
/// whether it can really be used is [`super::probe_enforceable`]'s question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    pub memory: Option<Placement>,
    pub pids: Option<Placement>,
    pub cpu: Option<Placement>,
    pub unified: Option<Unified>,
}

impl CgroupLayout {
    /// Where `controller` is, if anywhere.
    pub fn placement(&self, controller: Controller) -> Option<&Placement> {
        match controller {
            Controller::Memory => self.memory.as_ref(),
            Controller::Pids => self.pids.as_ref(),
            Controller::Cpu => self.cpu.as_ref(),
        }
    }

    fn placement_mut(&mut self, controller: Controller) -> &mut Option<Placement> {
        match controller {
            Controller::Memory => &mut self.memory,
            Controller::Pids => &mut self.pids,
            Controller::Cpu => &mut self.cpu,
        }
    }

    /// `"v1"`, `"v2"`, `"hybrid"` or `"none"`, over the controllers present.
    pub fn version(&self) -> &'static str {
        let versions: Vec<Version> =
            Controller::ALL.iter().filter_map(|c| self.placement(*c)).map(|p| p.version).collect();
        version_name(&versions, self.unified.is_some())
    }

    /// The same layout with only `keep` controllers.
    pub fn only(&self, keep: &[Controller]) -> CgroupLayout {
        let mut out = CgroupLayout { unified: self.unified.clone(), ..CgroupLayout::default() };
        for c in keep {
            *out.placement_mut(*c) = self.placement(*c).cloned();
        }
        out
    }
}

/// Names a set of controller versions: no controller is `"none"`, all on v2
/// is `"v2"`, all on v1 is `"v1"` unless a cgroup2 mount is there too.
pub(crate) fn version_name(versions: &[Version], unified_mounted: bool) -> &'static str {
    if versions.is_empty() {
        "none"
    } else if versions.iter().all(|v| *v == Version::V2) {
        "v2"
    } else if versions.iter().all(|v| *v == Version::V1) && !unified_mounted {
        "v1"
    } else {
        "hybrid"
    }
}

/// Reads the layout of this process's cgroups. Unreadable files give an
/// empty layout (version `"none"`), logged, rather than an error: a host
/// without cgroups can still run tasks, just without limits.
pub fn detect(proc_root: &Path, sys_root: &Path) -> CgroupLayout {
    let read = |name: &str| {
        let path = proc_root.join("self").join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "failed to read; assuming no cgroups"))
            .unwrap_or_default()
    };
    let mounts = parse_mountinfo(&read("mountinfo"));
    let memberships = parse_proc_cgroup(&read("cgroup"));
    let mut layout = CgroupLayout::default();
    for controller in Controller::ALL {
        *layout.placement_mut(controller) = v1_placement(&mounts, &memberships, controller, sys_root);
    }
    layout.unified = unified(&mounts, &memberships, sys_root);
    if let Some(u) = layout.unified.clone() {
        for controller in Controller::ALL {
            if u.controllers.iter().any(|c| c == controller.name()) {
                // The kernel only lists a controller here when no v1 hierarchy holds it.
                *layout.placement_mut(controller) =
                    Some(Placement { version: Version::V2, mount: u.mount.clone(), own_path: u.own_path.clone() });
            }
        }
    }
    layout
}

struct MountEntry {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: Vec<String>,
}

struct Membership {
    hierarchy: String,
    controllers: Vec<String>,
    path: String,
}

// Ref: https://www.kernel.org/doc/Documentation/filesystems/proc.txt (3.5 /proc/<pid>/mountinfo)
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?.to_owned();
            let _source = after.next()?;
            let super_options = after.next().unwrap_or("").split(',').map(str::to_owned).collect();
            Some(MountEntry {
                root: unescape(fields.get(3)?),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype,
                super_options,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// Ref: https://man7.org/linux/man-pages/man7/cgroups.7.html ("/proc/[pid]/cgroup")
fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.to_owned();
            let controllers = parts.next()?.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
            let path = parts.next()?.to_owned();
            Some(Membership { hierarchy, controllers, path })
        })
        .collect()
}

/// The mount point as seen from `sys_root`.
fn under_sys_root(sys_root: &Path, mount_point: &Path) -> PathBuf {
    match mount_point.strip_prefix("/sys") {
        Ok(rest) => sys_root.join(rest),
        Err(_) => mount_point.to_owned(),
    }
}

/// This process's cgroup relative to a mount of the hierarchy whose root is
/// `mount_root`; `None` when it is outside the mount (e.g. `/..` under a
/// cgroup namespace), where it cannot be reached.
fn within_mount(mount_root: &str, cgroup_path: &str) -> Option<PathBuf> {
    let rest = if mount_root == "/" { cgroup_path } else { cgroup_path.strip_prefix(mount_root)? };
    if !(rest.is_empty() || rest.starts_with('/')) || rest.split('/').any(|c| c == "..") {
        return None;
    }
    Some(PathBuf::from(rest.trim_start_matches('/')))
}

fn v1_placement(
    mounts: &[MountEntry],
    memberships: &[Membership],
    controller: Controller,
    sys_root: &Path,
) -> Option<Placement> {
    let name = controller.name();
    let mount = mounts.iter().find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == name))?;
    let member = memberships.iter().find(|m| m.hierarchy != "0" && m.controllers.iter().any(|c| c == name))?;
    let own_path = within_mount(&mount.root, &member.path)?;
    Some(Placement { version: Version::V1, mount: under_sys_root(sys_root, &mount.mount_point), own_path })
}

fn unified(mounts: &[MountEntry], memberships: &[Membership], sys_root: &Path) -> Option<Unified> {
    let mount = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let member = memberships.iter().find(|m| m.hierarchy == "0" && m.controllers.is_empty())?;
    let own_path = within_mount(&mount.root, &member.path)?;
    let mount_point = under_sys_root(sys_root, &mount.mount_point);
    let own_dir = mount_point.join(&own_path);
    let list = |file: &str| fsutil::read_words(&own_dir.join(file)).unwrap_or_default();
    Some(Unified {
        controllers: list("cgroup.controllers"),
        subtree_control: list("cgroup.subtree_control"),
        mount: mount_point,
        own_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture host: `/proc/self/{mountinfo,cgroup}` and the given files under `sys/`.
    fn host(mountinfo: &str, cgroup: &str, sys_files: &[(&str, &str)]) -> (tempfile::TempDir, CgroupLayout) {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_self = root.path().join("proc/self");
        std::fs::create_dir_all(&proc_self).expect("mkdir");
        std::fs::write(proc_self.join("mountinfo"), mountinfo).expect("write");
        std::fs::write(proc_self.join("cgroup"), cgroup).expect("write");
        for (path, text) in sys_files {
            let path = root.path().join("sys").join(path);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let layout = detect(&root.path().join("proc"), &root.path().join("sys"));
        (root, layout)
    }

    fn placement(root: &tempfile::TempDir, version: Version, mount: &str, own: &str) -> Option<Placement> {
        Some(Placement { version, mount: root.path().join("sys").join(mount), own_path: own.into() })
    }

    #[test]
    fn v2_only_host_under_systemd() {
        let (root, layout) = host(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/kiln-agent.service\n",
            &[
                ("fs/cgroup/system.slice/kiln-agent.service/cgroup.controllers", "cpuset cpu io memory pids\n"),
                ("fs/cgroup/system.slice/kiln-agent.service/cgroup.subtree_control", "memory\n"),
            ],
        );
        let own = "system.slice/kiln-agent.service";
        assert_eq!(layout.memory, placement(&root, Version::V2, "fs/cgroup", own));
        assert_eq!(layout.pids, placement(&root, Version::V2, "fs/cgroup", own));
        assert_eq!(layout.cpu, placement(&root, Version::V2, "fs/cgroup", own));
        let unified = layout.unified.as_ref().expect("cgroup2 is mounted");
        assert_eq!(unified.subtree_control, vec!["memory".to_owned()]);
        assert_eq!(layout.version(), "v2");
        let task = layout.memory.as_ref().expect("memory").task_dir("wr-1");
        assert!(task.ends_with("fs/cgroup/system.slice/kiln-agent.service/kiln/wr-1"), "{task:?}");
    }

    #[test]
    fn v1_only_host_with_comounted_cpu() {
        let (root, layout) = host(
            "25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
             27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct\n\
             32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory\n\
             33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids\n",
            "12:pids:/user.slice/user-1000.slice/session-1.scope\n7:memory:/user.slice\n\
             4:cpu,cpuacct:/\n1:name=systemd:/user.slice/user-1000.slice/session-1.scope\n",
            &[],
        );
        assert_eq!(layout.memory, placement(&root, Version::V1, "fs/cgroup/memory", "user.slice"));
        assert_eq!(
            layout.pids,
            placement(&root, Version::V1, "fs/cgroup/pids", "user.slice/user-1000.slice/session-1.scope")
        );
        assert_eq!(layout.cpu, placement(&root, Version::V1, "fs/cgroup/cpu,cpuacct", ""));
        assert_eq!(layout.unified, None);
        assert_eq!(layout.version(), "v1");
    }

    #[test]
    fn hybrid_host_like_this_build_machine() {
        let (root, layout) = host(
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
             39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
            "8:pids:/\n4:memory:/process_api/687e0e98\n1:cpu:/\n0::/\n",
            &[("fs/cgroup/unified/cgroup.controllers", "hugetlb\n"), ("fs/cgroup/unified/cgroup.subtree_control", "")],
        );
        assert_eq!(layout.memory, placement(&root, Version::V1, "fs/cgroup/memory", "process_api/687e0e98"));
        assert_eq!(layout.pids, placement(&root, Version::V1, "fs/cgroup/pids", ""));
        assert_eq!(layout.cpu, placement(&root, Version::V1, "fs/cgroup/cpu", ""));
        let unified = layout.unified.as_ref().expect("cgroup2 is mounted");
        assert_eq!(unified.controllers, vec!["hugetlb".to_owned()]);
        assert_eq!(layout.version(), "hybrid");
        assert_eq!(layout.only(&[Controller::Pids]).version(), "hybrid");
        assert_eq!(layout.only(&[]).memory, None);
    }

    #[test]
    fn container_mounts_and_unreachable_cgroups() {
        let (root, layout) = host(
            "40 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             41 31 0:36 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
             42 31 0:29 / /srv/my\\040cgroups/cpu rw - cgroup cgroup rw,cpu\n",
            "4:memory:/docker/abc/sub\n8:pids:/elsewhere\n1:cpu:/../outside\n",
            &[],
        );
        assert_eq!(layout.memory, placement(&root, Version::V1, "fs/cgroup/memory", "sub"));
        assert_eq!(layout.pids, None, "a cgroup outside the mounted subtree cannot be reached");
        assert_eq!(layout.cpu, None, "nor can one above the namespace root");
        assert_eq!(unescape("/srv/my\\040cgroups"), "/srv/my cgroups");
        assert_eq!(within_mount("/", "/a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(within_mount("/a", "/ab"), None);
    }

    #[test]
    fn no_cgroups_at_all() {
        let (_root, layout) = host("22 27 0:21 / /proc rw - proc proc rw\n", "", &[]);
        assert_eq!(layout, CgroupLayout::default());
        assert_eq!(layout.version(), "none");
        let missing = detect(Path::new("/nonexistent/proc"), Path::new("/nonexistent/sys"));
        assert_eq!(missing.version(), "none");
    }
}
