//! The `kiln:system-image` format (docs/system-image.md): a directory of
//! files, uploaded as one artifact, described by `image.json`.
//!
//! - `disk.qcow2`: the root filesystem (ext4 over the whole disk, no
//!   partition table), with the kernel's files in `/boot` and `/lib/modules`;
//! - `vmlinuz`: the kernel, booted directly by QEMU (no boot loader);
//! - `initrd.img`: Kiln's initramfs: a static busybox, the kernel modules
//!   the guest needs (virtio, fw_cfg) and `/init`, which runs the task;
//! - `image.json`: this manifest.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST: &str = "image.json";
pub const FORMAT: &str = "kiln-system-image";
pub const FORMAT_VERSION: u32 = 1;
/// The version of the contract between the host and `/init` in the guest.
pub const GUEST_PROTOCOL: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Debian architecture name.
    pub architecture: String,
    pub disk: String,
    pub disk_format: String,
    pub kernel: String,
    pub initrd: String,
    pub kernel_version: String,
    /// Kernel command line; the host appends its own `kiln.*` parameters.
    pub cmdline: String,
    pub guest_protocol: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a Kiln system image: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    pub fn new(architecture: &str, kernel_version: &str) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            architecture: architecture.into(),
            disk: "disk.qcow2".into(),
            disk_format: "qcow2".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            kernel_version: kernel_version.into(),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
            guest_protocol: GUEST_PROTOCOL,
        }
    }

    /// Read and check the manifest of the image in `dir`.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST);
        let shown = path.display().to_string();
        let bytes =
            std::fs::read(&path).map_err(|e| ImageError::Read { path: shown.clone(), message: e.to_string() })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid { path: shown.clone(), message: e.to_string() })?;
        manifest.check().map_err(|message| ImageError::Invalid { path: shown.clone(), message })?;
        for file in [&manifest.disk, &manifest.kernel, &manifest.initrd] {
            if !dir.join(file).is_file() {
                return Err(ImageError::Invalid { path: shown, message: format!("{file} is missing") });
            }
        }
        Ok(manifest)
    }

    /// Is this a manifest this agent can boot?
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, not {FORMAT:?}", self.format));
        }
        if self.version != FORMAT_VERSION || self.guest_protocol != GUEST_PROTOCOL {
            return Err(format!(
                "version {} with guest protocol {}: this agent knows version {FORMAT_VERSION}, protocol {GUEST_PROTOCOL}",
                self.version, self.guest_protocol
            ));
        }
        if self.disk_format != "qcow2" && self.disk_format != "raw" {
            return Err(format!("unknown disk format {:?}", self.disk_format));
        }
        let plain = |f: &String| !f.is_empty() && !f.contains('/') && f != "." && f != "..";
        if ![&self.disk, &self.kernel, &self.initrd].into_iter().all(plain) {
            return Err("file names must be plain names in the image".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_only_complete_images_of_a_known_version() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = Manifest::new("amd64", "6.1.0-56-cloud-amd64");
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_vec(&m).expect("json")).expect("write");
        assert!(Manifest::load(dir.path()).expect_err("files missing").to_string().contains("disk.qcow2"));
        for f in ["disk.qcow2", "vmlinuz", "initrd.img"] {
            std::fs::write(dir.path().join(f), b"x").expect("write");
        }
        assert_eq!(Manifest::load(dir.path()).expect("complete"), m);
        assert!(Manifest { guest_protocol: 2, ..m.clone() }.check().is_err());
        assert!(Manifest { kernel: "../vmlinuz".into(), ..m.clone() }.check().is_err());
        assert!(Manifest { format: "other".into(), ..m }.check().is_err());
    }
}
