//! Pre-formatted writable layers. Making a task's quota file system
//! (`mkfs.ext4`, ~30 ms here) is the slowest step of a sandbox's start, so
//! the agent keeps a few formatted layer images of the default quota ready
//! in `<data-dir>/layers/` and hands one to each task that uses the default
//! quota; the shim then only mounts it. A layer is used once and then
//! deleted with its task directory; the pool refills in the background.

use crate::sandbox::ID_MAP_BASE;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct LayerPool {
    dir: PathBuf,
    size: u64,
    keep: usize,
    counter: AtomicU64,
}

/// Format an ext4 image of `size` bytes whose root belongs to the sandbox's root.
pub fn format(image: &Path, size: u64) -> std::io::Result<()> {
    let file = std::fs::File::create(image)?;
    file.set_len(size)?;
    drop(file);
    let owner = format!("root_owner={ID_MAP_BASE}:{ID_MAP_BASE}");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-m", "0", "-E", &owner])
        .arg(image)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        let _ = std::fs::remove_file(image);
        Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

impl LayerPool {
    pub fn new(data_dir: &Path, size: u64, keep: usize) -> std::io::Result<Self> {
        let dir = data_dir.join("layers");
        // Leftovers of an interrupted fill are not trusted.
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)?.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".partial") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        std::fs::create_dir_all(&dir)?;
        Ok(LayerPool { dir, size, keep, counter: AtomicU64::new(0) })
    }

    fn ready(&self) -> Vec<PathBuf> {
        let suffix = format!("-{}.img", self.size);
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().is_some_and(|n| {
                            n.to_string_lossy().ends_with(&suffix) && !n.to_string_lossy().starts_with('.')
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Move a ready layer of `size` bytes to `dest`; false when none is ready.
    pub fn take(&self, size: u64, dest: &Path) -> bool {
        if size != self.size {
            return false;
        }
        self.ready().into_iter().any(|layer| std::fs::rename(&layer, dest).is_ok())
    }

    /// Format layers until `keep` are ready (blocking: run off async threads).
    pub fn fill(&self) {
        while self.ready().len() < self.keep {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let partial = self.dir.join(format!(".partial-{}-{n}", std::process::id()));
            let done = self.dir.join(format!("layer-{}-{n}-{}.img", std::process::id(), self.size));
            match format(&partial, self.size).and_then(|()| std::fs::rename(&partial, &done)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "failed to prepare a writable layer; tasks format their own");
                    let _ = std::fs::remove_file(&partial);
                    return;
                }
            }
        }
    }
}
