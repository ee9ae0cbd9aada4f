//! Bootable `kiln:system-image`s for the qemu tests, made with
//! `kiln-agent image build` from the busybox root filesystem and Debian's
//! cloud kernel package (`apt-get download`), cached by their inputs under
//! the test image cache.

use crate::images::{busybox_rootfs, cache_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel package `linux-image-cloud-amd64` depends on, as a `.deb`
/// in the test image cache (downloaded once per kernel version).
pub fn kernel_deb() -> PathBuf {
    let depends = Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]).output().expect("apt-cache");
    let text = String::from_utf8_lossy(&depends.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("linux-image-cloud-amd64 depends on no kernel here: {text}"))
        .to_owned();
    let dir = cache_dir().join("kernel");
    std::fs::create_dir_all(&dir).expect("create the kernel cache");
    static DOWNLOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = DOWNLOADING.lock().unwrap_or_else(|p| p.into_inner());
    let found = |dir: &Path| {
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
    };
    if let Some(deb) = found(&dir) {
        return deb;
    }
    let work = tempfile::tempdir_in(&dir).expect("tmp");
    let status =
        Command::new("apt-get").arg("download").arg(&package).current_dir(work.path()).status().expect("apt-get");
    assert!(status.success(), "apt-get download {package} failed");
    let deb = found(work.path()).expect("the downloaded package");
    let target = dir.join(deb.file_name().expect("name"));
    std::fs::rename(&deb, &target).expect("publish the kernel package");
    target
}

fn digest_of(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())[..12].to_owned()
}

/// A system image of the busybox root with Debian's cloud kernel.
pub fn busybox_system_image() -> PathBuf {
    system_image_of(&busybox_rootfs(), "busybox")
}

/// A system image of Debian bookworm minbase (mmdebstrap) with Debian's
/// cloud kernel.
pub fn debian_system_image() -> PathBuf {
    system_image_of(&crate::images::debian_minbase(), "debian-minbase")
}

/// A system image of `tarball` with Debian's cloud kernel, built by
/// `kiln-agent image build`; cached by its inputs (the tarball, the kernel
/// package, and the agent's guest init and image builder sources).
pub fn system_image_of(tarball: &Path, label: &str) -> PathBuf {
    let tarball = tarball.to_owned();
    let deb = kernel_deb();
    let agent_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/src/backends/qemu");
    let sources: Vec<Vec<u8>> = ["guest_init.sh", "initramfs.rs", "build.rs", "image.rs"]
        .iter()
        .map(|f| std::fs::read(agent_src.join(f)).unwrap_or_default())
        .collect();
    let mut parts: Vec<&[u8]> = vec![tarball.as_os_str().as_encoded_bytes(), deb.as_os_str().as_encoded_bytes()];
    parts.extend(sources.iter().map(Vec::as_slice));
    let out = cache_dir().join(format!("{label}-system-image-{}", digest_of(&parts)));
    // Tests of one binary run as threads: one builds, the others wait.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if out.join("image.json").exists() {
        return out;
    }
    let partial = out.with_extension(format!("partial-{}-{}", std::process::id(), crate::random_suffix()));
    let _ = std::fs::remove_dir_all(&partial);
    let result = Command::new(crate::binary("kiln-agent"))
        .args(["image", "build", "--tarball"])
        .arg(&tarball)
        .arg("--kernel-deb")
        .arg(&deb)
        .arg("--output")
        .arg(&partial)
        .output()
        .expect("run kiln-agent image build");
    assert!(result.status.success(), "image build failed: {}", String::from_utf8_lossy(&result.stderr));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&partial, &out).expect("publish the system image");
    out
}

/// Upload the files of a system image directory as a `kiln:system-image`.
pub async fn upload_system_image(client: &kiln_shared::client::Client, dir: &Path, architecture: &str) -> i64 {
    use sha2::Digest;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the image")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("read an image file");
        files.push(kiln_shared::artifact::FileSpec {
            path: name.clone(),
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        });
    }
    let new = kiln_shared::artifact::NewArtifact {
        category: "kiln:system-image".into(),
        data: crate::obj(serde_json::json!({
            "codename": "test", "architecture": architecture, "variant": "busybox", "backends": ["qemu"],
        })),
        files,
        work_request: None,
    };
    let artifact = client.create_artifact(&new).await.expect("create the system image artifact");
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("read an image file");
        client.upload_file(artifact.id, name, bytes).await.expect("upload an image file");
    }
    artifact.id
}

/// Why qemu tests cannot run here, if they cannot.
pub fn qemu_missing() -> Option<String> {
    for tool in ["qemu-system-x86_64", "qemu-img", "mkfs.ext4", "apt-get", "dpkg-deb"] {
        let found =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists())).unwrap_or(false);
        if !found {
            return Some(format!("{tool} is missing: scripts/setup installs qemu-system-x86 and qemu-utils"));
        }
    }
    None
}

/// Skip a qemu test (with the marker CI looks for) when QEMU is missing.
#[macro_export]
macro_rules! require_qemu {
    () => {
        $crate::require_privileged!();
        if let Some(reason) = $crate::system_images::qemu_missing() {
            println!("SKIPPED-BACKEND: {reason}");
            return;
        }
    };
}
