//! `kiln-agent image build`: turn a system tarball into a `kiln:system-image`
//! (docs/system-image.md) with Debian's kernel packages. The tarball is
//! unpacked, the kernel packages (`--kernel-deb`, unless the tree already
//! has a kernel in /boot) are unpacked into it, Kiln's initramfs is built
//! from the kernel's modules and a static busybox, and the tree becomes an
//! ext4 filesystem (`mkfs.ext4 -d`) in a compressed qcow2 (`qemu-img`).

use super::image::{Manifest, MANIFEST};
use super::initramfs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub tarball: PathBuf,
    pub kernel_debs: Vec<PathBuf>,
    pub output: PathBuf,
    pub busybox: PathBuf,
    pub architecture: String,
    /// Virtual size of the disk; 0: the tree's size plus room to work.
    pub disk_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("failed to {what}: {message}")]
    Failed { what: String, message: String },
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
}

fn failed(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |e| BuildError::Failed { what, message: e.to_string() }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BuildError> {
    let out = cmd.output().map_err(failed(what))?;
    if out.status.success() {
        return Ok(());
    }
    let message = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Err(BuildError::Failed { what: what.to_owned(), message })
}

/// Unpack a package's files into `root` as dpkg would lay them out:
/// through the tree's directory symlinks (a merged-/usr `/lib -> usr/lib`
/// must stay a symlink, which `dpkg-deb -x` would replace by a directory).
fn unpack_deb(deb: &Path, root: &Path) -> Result<(), BuildError> {
    let what = format!("unpack {}", deb.display());
    let mut fsys = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(failed(what.clone()))?;
    let stdout =
        fsys.stdout.take().ok_or_else(|| BuildError::Failed { what: what.clone(), message: "no pipe".into() })?;
    let tar = Command::new("tar")
        .args(["-x", "--keep-directory-symlink", "--same-owner", "-C"])
        .arg(root)
        .stdin(stdout)
        .output()
        .map_err(failed(what.clone()))?;
    let status = fsys.wait().map_err(failed(what.clone()))?;
    if !status.success() || !tar.status.success() {
        let message = format!("dpkg-deb {status}, tar {}: {}", tar.status, String::from_utf8_lossy(&tar.stderr).trim());
        return Err(BuildError::Failed { what, message });
    }
    Ok(())
}

/// The newest `/boot/vmlinuz-<version>` of a tree, by version.
fn find_kernel(root: &Path) -> Option<(String, PathBuf)> {
    let mut kernels: Vec<String> = std::fs::read_dir(root.join("boot"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    kernels.sort_by(|a, b| compare_versions(a, b));
    let version = kernels.pop()?;
    let image = root.join("boot").join(format!("vmlinuz-{version}"));
    Some((version, image))
}

/// Compare dotted/dashed versions numerically where they are numbers.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '+', '~']).map(|p| (p.parse().unwrap_or(0), p.to_owned())).collect()
    };
    parts(a).cmp(&parts(b))
}

fn modules_dir(root: &Path, version: &str) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"].iter().map(|d| root.join(d).join(version)).find(|d| d.is_dir())
}

/// Bytes of file content under `dir` (not following symlinks).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// Build the image into `options.output` (created; must not exist or be empty).
pub fn build(options: &BuildOptions) -> Result<Manifest, BuildError> {
    let out = &options.output;
    std::fs::create_dir_all(out).map_err(failed(format!("create {}", out.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".kiln-image-build-")
        .tempdir_in(out)
        .map_err(failed("create a work directory"))?;
    let root = work.path().join("root");
    let tarball =
        std::fs::File::open(&options.tarball).map_err(failed(format!("open {}", options.tarball.display())))?;
    crate::image_cache::extract::unpack(std::io::BufReader::with_capacity(1 << 20, tarball), &root, 0).map_err(
        |e| BuildError::Failed { what: format!("unpack {}", options.tarball.display()), message: e.to_string() },
    )?;
    for deb in &options.kernel_debs {
        unpack_deb(deb, &root)?;
    }
    let (version, kernel) = find_kernel(&root).ok_or_else(|| BuildError::Failed {
        what: "find a kernel".into(),
        message: "no /boot/vmlinuz-* in the tarball: pass Debian's kernel package with --kernel-deb".into(),
    })?;
    let modules = modules_dir(&root, &version).ok_or_else(|| BuildError::Failed {
        what: "find the kernel's modules".into(),
        message: format!("no lib/modules/{version} in the tree"),
    })?;
    let manifest = Manifest::new(&options.architecture, &version);
    initramfs::build(&modules, &options.busybox, &out.join(&manifest.initrd))?;
    std::fs::copy(&kernel, out.join(&manifest.kernel)).map_err(failed("copy the kernel"))?;
    let used = tree_size(&root);
    let size =
        if options.disk_size > 0 { options.disk_size } else { (used.saturating_mul(2) + (2 << 30)).max(8 << 30) };
    let raw = work.path().join("disk.raw");
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "kiln-root", "-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&raw)
            .arg(format!("{}k", size / 1024)),
        "make the root filesystem (mkfs.ext4 -d)",
    )?;
    run(
        Command::new("qemu-img")
            .args(["convert", "-c", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(out.join(&manifest.disk)),
        "convert the disk to qcow2 (qemu-img convert)",
    )?;
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BuildError::Failed { what: "write the manifest".into(), message: e.to_string() })?;
    std::fs::write(out.join(MANIFEST), text).map_err(failed("write the manifest"))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_kernel_wins() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("boot")).expect("mkdir");
        for v in ["6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64", "5.10.0-30-amd64"] {
            std::fs::write(dir.path().join(format!("boot/vmlinuz-{v}")), b"k").expect("write");
        }
        std::fs::write(dir.path().join("boot/config-6.1.0-99-cloud-amd64"), b"c").expect("write");
        assert_eq!(find_kernel(dir.path()).map(|(v, _)| v).as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert!(find_kernel(&dir.path().join("nothing")).is_none());
    }
}
