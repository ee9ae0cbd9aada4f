//! What the host really lets us enforce: a controller being mounted is not
//! enough (read-only cgroupfs in containers, no delegation under v2, the "no
//! internal processes" rule), so each one is tried by creating a child
//! cgroup, writing a limit and removing it again.

use super::detect::version_name;
use super::{CgroupLayout, CgroupLimits, Controller, Enforceable, TaskCgroup};
use std::sync::atomic::{AtomicU32, Ordering};

static PROBES: AtomicU32 = AtomicU32::new(0);

impl CgroupLayout {
    /// Which controllers can be used, found by [`probe_enforceable`].
    pub fn enforceable(&self) -> Enforceable {
        probe_enforceable(self)
    }

    /// This layout without the controllers that cannot be enforced: what
    /// [`TaskCgroup::create`] should be given.
    pub fn restricted_to(&self, enforceable: &Enforceable) -> CgroupLayout {
        let keep: Vec<Controller> = Controller::ALL.into_iter().filter(|c| enforceable.allows(*c)).collect();
        self.only(&keep)
    }
}

/// Tries each controller of `layout` for real: creates
/// `kiln/probe-<pid>-<n>` with just that controller, writes a limit to it and
/// removes it. Failures are logged (at info: they are a fact about the host)
/// and reported as `false`.
pub fn probe_enforceable(layout: &CgroupLayout) -> Enforceable {
    let mut works = Vec::new();
    for controller in Controller::ALL {
        let Some(placement) = layout.placement(controller) else { continue };
        match probe_one(layout, controller) {
            Ok(()) => works.push((controller, placement.version)),
            Err(e) => tracing::info!(%controller, error = %e, "cgroup controller not enforceable"),
        }
    }
    let has = |c: Controller| works.iter().any(|(w, _)| *w == c);
    let versions: Vec<_> = works.iter().map(|(_, v)| *v).collect();
    Enforceable {
        memory: has(Controller::Memory),
        pids: has(Controller::Pids),
        cpu: has(Controller::Cpu),
        version: version_name(&versions, layout.unified.is_some()).to_owned(),
    }
}

fn probe_one(layout: &CgroupLayout, controller: Controller) -> Result<(), super::CgroupError> {
    let name = format!("probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed));
    let limits = match controller {
        Controller::Memory => CgroupLimits { memory: Some(1 << 40), ..CgroupLimits::default() },
        Controller::Pids => CgroupLimits { pids: Some(4096), ..CgroupLimits::default() },
        Controller::Cpu => CgroupLimits { cpus: Some(1.0), ..CgroupLimits::default() },
    };
    TaskCgroup::create(&layout.only(&[controller]), &name, &limits)?.remove()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Placement, Version};

    #[test]
    fn a_plain_directory_is_not_a_cgroup() {
        let root = tempfile::tempdir().expect("tempdir");
        let placement = Placement { version: Version::V1, mount: root.path().join("memory"), own_path: "a/b".into() };
        std::fs::create_dir_all(placement.own_dir()).expect("mkdir");
        let layout = CgroupLayout { memory: Some(placement.clone()), ..CgroupLayout::default() };
        let found = probe_enforceable(&layout);
        assert_eq!(found, Enforceable { memory: false, pids: false, cpu: false, version: "none".into() });
        let leftovers: Vec<_> = std::fs::read_dir(placement.kiln_dir()).expect("kiln/ is kept").collect();
        assert!(leftovers.is_empty(), "the probe cgroup is removed: {leftovers:?}");
        assert_eq!(layout.restricted_to(&found), CgroupLayout::default());
    }
}
