//! Host side of a task's root filesystem, done by the shim (real root) in
//! its own private mount namespace, so every mount here vanishes when the
//! shim ends, however it ends: a writable layer on a loop-mounted ext4 of
//! the quota's size (or a plain directory when no quota can be enforced),
//! and the overlay of that layer on the cached image.

use super::spec::Plan;
use super::{SandboxError, ID_MAP_BASE};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{chown, Gid, Uid};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Leave the host's mount namespace; nothing mounted afterwards propagates back.
pub fn enter_private_mount_namespace() -> Result<(), SandboxError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(SandboxError::sys("create the shim's mount namespace"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(SandboxError::sys("make the shim's mounts private"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), SandboxError> {
    let out = cmd.output().map_err(SandboxError::io(what.to_owned()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::Setup { what: what.to_owned(), message: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
}

fn owned_dir(path: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(path).map_err(SandboxError::io(format!("create {}", path.display())))?;
    chown(path, Some(Uid::from_raw(ID_MAP_BASE)), Some(Gid::from_raw(ID_MAP_BASE)))
        .map_err(SandboxError::sys(format!("chown {}", path.display())))
}

/// Create `dir` and any missing parents world-searchable (0755).
fn create_searchable(dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(SandboxError::io(format!("create {}", dir.display())))
}

/// Overlay options are comma- and colon-separated: refuse paths that would
/// change their meaning.
fn overlay_safe(path: &Path) -> Result<&str, SandboxError> {
    let text = path.to_str().ok_or_else(|| SandboxError::Spec(format!("{} is not UTF-8", path.display())))?;
    if text.contains([',', ':', '\n']) {
        return Err(SandboxError::Spec(format!("{text:?} cannot be an overlay layer path")));
    }
    Ok(text)
}

/// The task's writable layer and merged root.
pub fn prepare(plan: &Plan, task_dir: &Path, output: &Path) -> Result<(), SandboxError> {
    let layer = task_dir.join("layer");
    std::fs::create_dir_all(&layer).map_err(SandboxError::io(format!("create {}", layer.display())))?;
    if let Some(quota) = plan.disk_quota {
        // The agent may have placed a pre-formatted layer of this size here.
        let image = task_dir.join("layer.img");
        let formatted = std::fs::metadata(&image).is_ok_and(|m| m.len() == quota);
        if !formatted {
            let file =
                std::fs::File::create(&image).map_err(SandboxError::io(format!("create {}", image.display())))?;
            file.set_len(quota).map_err(SandboxError::io(format!("size {}", image.display())))?;
            drop(file);
            let owner = format!("root_owner={ID_MAP_BASE}:{ID_MAP_BASE}");
            run(
                Command::new("mkfs.ext4").args(["-q", "-F", "-O", "^has_journal", "-m", "0", "-E", &owner]).arg(&image),
                "make the writable layer's file system",
            )?;
        }
        run(
            Command::new("mount").args(["-o", "loop,nosuid,nodev"]).arg(&image).arg(&layer),
            "mount the writable layer",
        )?;
    }
    let (upper, work) = (layer.join("upper"), layer.join("work"));
    owned_dir(&upper)?;
    owned_dir(&work)?;
    owned_dir(output)?;
    create_searchable(&plan.rootfs)?;
    if let Some((real, exposed)) = &plan.output {
        create_searchable(exposed)?;
        mount(Some(real.as_path()), exposed.as_path(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(SandboxError::sys(format!("expose {} at {}", real.display(), exposed.display())))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay_safe(&plan.lower)?,
        overlay_safe(&upper)?,
        overlay_safe(&work)?
    );
    mount(
        Some("overlay"),
        &plan.rootfs,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(SandboxError::sys(format!("mount the task's overlay at {}", plan.rootfs.display())))
}

/// Undo `prepare` (the namespace's end would too; this frees the loop
/// device and the layer's disk space now).
pub fn cleanup(plan: &Plan, task_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let layer: PathBuf = task_dir.join("layer");
    let exposed_output = plan.output.as_ref().map(|(_, exposed)| exposed.clone());
    for target in [Some(&plan.rootfs), Some(&layer), exposed_output.as_ref()].into_iter().flatten() {
        if let Err(e) = umount2(target.as_path(), MntFlags::MNT_DETACH) {
            if e != nix::Error::EINVAL {
                problems.push(format!("unmount {}: {e}", target.display()));
            }
        }
    }
    // The mount points under the runtime directory are empty once unmounted.
    for dir in [Some(&plan.rootfs), exposed_output.as_ref()].into_iter().flatten() {
        if let Err(e) = std::fs::remove_dir(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("remove {}: {e}", dir.display()));
            }
        }
    }
    for dir in [&layer] {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("remove {}: {e}", dir.display()));
            }
        }
    }
    let image = task_dir.join("layer.img");
    if let Err(e) = std::fs::remove_file(&image) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("remove {}: {e}", image.display()));
        }
    }
    problems
}
