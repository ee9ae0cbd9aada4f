//! The sandbox of one task as an OCI runtime spec: namespaces, id maps,
//! mounts, devices, cgroup resources and the process. Kiln-specific inputs
//! (the image's read-only lower layer, the writable layer's quota) travel as
//! annotations. The spec is built once by the agent and executed by the shim;
//! the same file could be handed to crun or runc.

use super::{SandboxError, ID_MAP_BASE, ID_MAP_SIZE, OUTPUT_IN_SANDBOX};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDeviceBuilder, LinuxDeviceType, LinuxIdMappingBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const ANNOTATION_LOWER: &str = "org.kiln.rootfs.lower";
pub const ANNOTATION_DISK_QUOTA: &str = "org.kiln.rootfs.disk-quota";
pub const ANNOTATION_TIMEOUT: &str = "org.kiln.timeout";
pub const ANNOTATION_NOTICE: &str = "org.kiln.notice";
/// The task's real output directory, which the shim binds at the mount's source.
pub const ANNOTATION_OUTPUT: &str = "org.kiln.output";
/// Controllers the agent found enforceable (comma-separated), so the shim
/// need not probe them again on every start.
pub const ANNOTATION_CONTROLLERS: &str = "org.kiln.cgroup.controllers";

/// What one task's sandbox needs.
#[derive(Debug, Clone)]
pub struct SandboxParams {
    /// The cached image's unpacked root filesystem (read-only lower layer).
    pub lower: PathBuf,
    /// Where the merged root is mounted (see `runtime_paths`).
    pub rootfs: PathBuf,
    /// Host directory that appears as `/kiln/output`.
    pub output: PathBuf,
    /// Where the shim exposes `output` to the sandbox (see `runtime_paths`).
    pub output_mount: PathBuf,
    pub args: Vec<String>,
    /// Extra environment on top of the defaults.
    pub env: Vec<(String, String)>,
    /// Keep the host network (only when the task asks and the agent allows).
    pub network: bool,
    pub memory: u64,
    pub pids: u64,
    /// 0: no CPU limit.
    pub cpus: f64,
    /// Quota of the writable layer; `None` when the host cannot enforce one.
    pub disk_quota: Option<u64>,
    pub tmp_size: u64,
    pub timeout_secs: u64,
    /// A line for the top of the task's log (e.g. why it has no network).
    pub notice: Option<String>,
    /// Enforceable cgroup controllers; `None`: the shim probes them itself.
    pub controllers: Option<Vec<String>>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_US: u64 = 100_000;

fn oci(e: oci_spec::OciSpecError) -> SandboxError {
    SandboxError::Spec(e.to_string())
}

/// The environment a task starts with: defaults, then the task's own
/// (`KILN_OUTPUT` always points at the output directory).
pub fn environment(extra: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env.retain(|(k, _)| k != "KILN_OUTPUT");
    env.push(("KILN_OUTPUT".into(), OUTPUT_IN_SANDBOX.into()));
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<oci_spec::runtime::Mount, SandboxError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(oci)
}

/// Build the spec of one task's sandbox.
pub fn build(p: &SandboxParams) -> Result<Spec, SandboxError> {
    let tmp_size = format!("size={}", p.tmp_size);
    let output = p.output_mount.to_string_lossy().into_owned();
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777", &tmp_size])?,
        mount(OUTPUT_IN_SANDBOX, "bind", &output, &["rbind", "nosuid", "nodev"])?,
    ];
    let devices = ["null", "zero", "full", "random", "urandom", "tty"]
        .iter()
        .map(|name| {
            LinuxDeviceBuilder::default()
                .path(format!("/dev/{name}"))
                .typ(LinuxDeviceType::C)
                .major(0i64)
                .minor(0i64)
                .build()
                .map_err(oci)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut namespaces = vec![
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if !p.network {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().map_err(oci))
        .collect::<Result<Vec<_>, _>>()?;
    let id_map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(ID_MAP_BASE)
        .size(ID_MAP_SIZE)
        .build()
        .map_err(oci)?;
    let mut resources = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(p.memory as i64).swap(p.memory as i64).build().map_err(oci)?)
        .pids(LinuxPidsBuilder::default().limit(p.pids as i64).build().map_err(oci)?);
    if p.cpus > 0.0 {
        let quota = (p.cpus * CPU_PERIOD_US as f64).round() as i64;
        resources = resources.cpu(LinuxCpuBuilder::default().quota(quota).period(CPU_PERIOD_US).build().map_err(oci)?);
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(vec![id_map])
        .gid_mappings(vec![id_map])
        .devices(devices)
        .resources(resources.build().map_err(oci)?)
        .build()
        .map_err(oci)?;
    let process = ProcessBuilder::default()
        .args(p.args.clone())
        .env(environment(&p.env))
        .cwd("/root")
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(oci)?)
        .no_new_privileges(true)
        .build()
        .map_err(oci)?;
    let mut annotations = HashMap::from([
        (ANNOTATION_LOWER.to_owned(), p.lower.to_string_lossy().into_owned()),
        (ANNOTATION_TIMEOUT.to_owned(), p.timeout_secs.to_string()),
        (ANNOTATION_OUTPUT.to_owned(), p.output.to_string_lossy().into_owned()),
    ]);
    if let Some(quota) = p.disk_quota {
        annotations.insert(ANNOTATION_DISK_QUOTA.to_owned(), quota.to_string());
    }
    if let Some(notice) = &p.notice {
        annotations.insert(ANNOTATION_NOTICE.to_owned(), notice.clone());
    }
    if let Some(controllers) = &p.controllers {
        annotations.insert(ANNOTATION_CONTROLLERS.to_owned(), controllers.join(","));
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(p.rootfs.clone()).readonly(false).build().map_err(oci)?)
        .mounts(mounts)
        .process(process)
        .hostname("kiln")
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(oci)
}

/// Add a read-only bind of a host directory (for the backend probe, which
/// borrows the host's /usr instead of an image).
pub fn add_readonly_bind(spec: &mut Spec, host: &str, inside: &str) -> Result<(), SandboxError> {
    let bind = mount(inside, "bind", host, &["rbind", "ro", "nosuid", "nodev"])?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(bind);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// What the shim executes, read back from a spec.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub lower: PathBuf,
    /// The real output directory and where the sandbox finds it.
    pub output: Option<(PathBuf, PathBuf)>,
    pub disk_quota: Option<u64>,
    pub timeout_secs: u64,
    pub notice: Option<String>,
    pub controllers: Option<Vec<String>>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub hostname: String,
    pub new_network: bool,
    pub mounts: Vec<oci_spec::runtime::Mount>,
    pub devices: Vec<PathBuf>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub uid_map: (u32, u32, u32),
}

/// Read a spec back into the plan the shim follows.
pub fn plan(spec: &Spec) -> Result<Plan, SandboxError> {
    let missing = |what: &str| SandboxError::Spec(format!("the spec has no {what}"));
    let annotations = spec.annotations().clone().unwrap_or_default();
    let process = spec.process().as_ref().ok_or_else(|| missing("process"))?;
    let linux = spec.linux().as_ref().ok_or_else(|| missing("linux section"))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let map = linux
        .uid_mappings()
        .as_ref()
        .and_then(|m| m.first())
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .ok_or_else(|| missing("uid mapping"))?;
    let resources = linux.resources().as_ref();
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(missing("process arguments"));
    }
    Ok(Plan {
        rootfs: spec.root().as_ref().ok_or_else(|| missing("root"))?.path().clone(),
        lower: annotations.get(ANNOTATION_LOWER).map(PathBuf::from).ok_or_else(|| missing(ANNOTATION_LOWER))?,
        output: annotations.get(ANNOTATION_OUTPUT).and_then(|real| {
            let mount = spec.mounts().as_ref()?.iter().find(|m| m.destination() == Path::new(OUTPUT_IN_SANDBOX))?;
            Some((PathBuf::from(real), mount.source().clone()?))
        }),
        disk_quota: annotations.get(ANNOTATION_DISK_QUOTA).and_then(|q| q.parse().ok()),
        timeout_secs: annotations.get(ANNOTATION_TIMEOUT).and_then(|t| t.parse().ok()).unwrap_or(14_400),
        notice: annotations.get(ANNOTATION_NOTICE).cloned(),
        controllers: annotations
            .get(ANNOTATION_CONTROLLERS)
            .map(|c| c.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()),
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().clone(),
        hostname: spec.hostname().clone().unwrap_or_else(|| "kiln".into()),
        new_network: namespaces.iter().any(|n| n.typ() == LinuxNamespaceType::Network),
        mounts: spec.mounts().clone().unwrap_or_default(),
        devices: linux.devices().clone().unwrap_or_default().iter().map(|d| d.path().clone()).collect(),
        memory: resources.and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).map(|l| l as u64),
        pids: resources.and_then(|r| r.pids().as_ref()).map(|p| p.limit() as u64),
        cpus: resources.and_then(|r| r.cpu().as_ref()).and_then(|c| Some(c.quota()? as f64 / c.period()? as f64)),
        uid_map: map,
    })
}

/// Save a spec as `config.json` in `dir` (as an OCI bundle would have it).
pub fn save(spec: &Spec, dir: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join("config.json");
    spec.save(&path).map_err(|e| SandboxError::Spec(format!("failed to write {}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(network: bool) -> SandboxParams {
        SandboxParams {
            lower: "/cache/7/rootfs".into(),
            rootfs: "/tasks/1/rootfs".into(),
            output: "/tasks/1/output".into(),
            output_mount: "/run/kiln-agent/outputs/1".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec![("PATH".into(), "/bin".into()), ("KILN_OUTPUT".into(), "/elsewhere".into())],
            network,
            memory: 1 << 30,
            pids: 100,
            cpus: 1.5,
            disk_quota: Some(5 << 30),
            tmp_size: 1 << 20,
            timeout_secs: 60,
            notice: None,
            controllers: Some(vec!["memory".into(), "pids".into()]),
        }
    }

    #[test]
    fn round_trips_through_the_spec() {
        let dir = tempfile::tempdir().expect("tmp");
        let spec = build(&params(false)).expect("spec");
        let path = save(&spec, dir.path()).expect("save");
        let plan = plan(&Spec::load(&path).expect("load")).expect("plan");
        assert_eq!(plan.lower, PathBuf::from("/cache/7/rootfs"));
        assert_eq!(plan.output, Some(("/tasks/1/output".into(), "/run/kiln-agent/outputs/1".into())));
        assert_eq!(plan.disk_quota, Some(5 << 30));
        assert!(plan.new_network, "no network unless asked");
        assert_eq!(plan.uid_map, (0, ID_MAP_BASE, ID_MAP_SIZE));
        assert_eq!(plan.memory, Some(1 << 30));
        assert_eq!(plan.cpus, Some(1.5));
        assert_eq!(plan.controllers, Some(vec!["memory".to_owned(), "pids".to_owned()]));
        assert!(plan.env.contains(&"PATH=/bin".to_owned()), "task env overrides defaults");
        assert!(plan.env.contains(&"KILN_OUTPUT=/kiln/output".to_owned()), "KILN_OUTPUT cannot be redirected");
        assert_eq!(plan.env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(plan.mounts.iter().any(|m| m.destination() == Path::new("/tmp")));
        assert!(!build(&params(true)).map(|s| super::plan(&s).expect("plan").new_network).expect("spec"));
    }
}
