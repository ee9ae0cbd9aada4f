//! Kiln's initramfs for system images: a gzipped `newc` cpio archive with a
//! static busybox, `/init` (guest_init.sh) and the kernel modules the guest
//! needs to reach its disk, its serial ports and fw_cfg, with their
//! dependencies (read from each module's `.modinfo`), in load order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The guest's `/init`.
pub const GUEST_INIT: &str = include_str!("guest_init.sh");

/// Modules the guest must have (unless built in), then nice-to-have ones.
pub const REQUIRED_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_console", "qemu_fw_cfg"];
pub const OPTIONAL_MODULES: &[&str] = &["virtio_net", "virtio_rng"];

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("failed to {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("kernel module {module} is neither built into the kernel nor found under {dir}")]
    MissingModule { module: String, dir: PathBuf },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitramfsError {
    let what = what.into();
    move |source| InitramfsError::Io { what, source }
}

/// A `newc` cpio archive being written.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Cpio { out, ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> std::io::Result<()> {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> std::io::Result<()> {
        self.out.write_all(&[0u8; 3][..(4 - len % 4) % 4])
    }

    pub fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, 0o100000 | mode, (0, 0), data)
    }
    pub fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> std::io::Result<()> {
        self.entry(name, 0o020000 | mode, (major, minor), &[])
    }
    /// Write the trailer; the underlying writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

/// A module file's contents, decompressed (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`).
fn read_module(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        xz2::read::XzDecoder::new(&raw[..]).read_to_end(&mut out)?;
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&raw[..])?.read_to_end(&mut out)?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// `depends=` of a module, from its `.modinfo` strings.
pub fn depends(module: &[u8]) -> Vec<String> {
    let needle = b"\0depends=";
    let Some(at) = module.windows(needle.len()).position(|w| w == needle) else { return Vec::new() };
    let rest = &module[at + needle.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect()
}

/// Every module file under `dir`, by module name (`-` read as `_`).
fn index_modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.join("kernel"), dir.join("updates"), dir.join("extra")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
                continue;
            }
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| file.strip_suffix(s)) {
                found.insert(stem.replace('-', "_"), path);
            }
        }
    }
    found
}

/// Modules built into the kernel (`modules.builtin`), by name.
fn builtin(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(|n| n.replace('-', "_")))
        .collect()
}

/// The modules to load, dependencies first, with their contents.
pub fn resolve(modules_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, InitramfsError> {
    let files = index_modules(modules_dir);
    let builtin = builtin(modules_dir);
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        files: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<bool, InitramfsError> {
        if !seen.insert(name.to_owned()) {
            return Ok(true);
        }
        let Some(path) = files.get(name) else { return Ok(false) };
        let bytes = read_module(path).map_err(io(format!("read {}", path.display())))?;
        for dep in depends(&bytes) {
            visit(&dep, files, seen, order)?;
        }
        order.push((name.to_owned(), bytes));
        Ok(true)
    }
    for (module, required) in
        REQUIRED_MODULES.iter().map(|m| (m, true)).chain(OPTIONAL_MODULES.iter().map(|m| (m, false)))
    {
        if builtin.contains(*module) {
            continue;
        }
        if !visit(module, &files, &mut seen, &mut order)? && required {
            return Err(InitramfsError::MissingModule { module: (*module).into(), dir: modules_dir.to_owned() });
        }
    }
    Ok(order)
}

/// Write the gzipped initramfs for the kernel whose modules are in
/// `modules_dir`, with `busybox` (a static binary) as its shell.
pub fn build(modules_dir: &Path, busybox: &Path, to: &Path) -> Result<(), InitramfsError> {
    let modules = resolve(modules_dir)?;
    let busybox_bytes = std::fs::read(busybox).map_err(io(format!("read {}", busybox.display())))?;
    let file = std::fs::File::create(to).map_err(io(format!("create {}", to.display())))?;
    let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
    let mut cpio = Cpio::new(gz);
    let write = |e| InitramfsError::Io { what: format!("write {}", to.display()), source: e };
    (|| -> std::io::Result<()> {
        for dir in ["bin", "dev", "proc", "sys", "root", "run", "tmp", "lib", "lib/kiln", "lib/kiln/modules"] {
            cpio.dir(dir)?;
        }
        cpio.char_device("dev/console", 0o600, 5, 1)?;
        cpio.char_device("dev/null", 0o666, 1, 3)?;
        cpio.file("bin/busybox", 0o755, &busybox_bytes)?;
        cpio.file("init", 0o755, GUEST_INIT.as_bytes())?;
        let mut order = String::new();
        for (name, bytes) in &modules {
            cpio.file(&format!("lib/kiln/modules/{name}.ko"), 0o644, bytes)?;
            order.push_str(name);
            order.push('\n');
        }
        cpio.file("lib/kiln/modules/order", 0o644, order.as_bytes())?;
        Ok(())
    })()
    .map_err(write)?;
    let gz = cpio.finish().map_err(write)?;
    let mut out = gz.finish().map_err(write)?;
    out.flush().map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(deps: &str) -> Vec<u8> {
        format!("\x7fELF....\0license=GPL\0depends={deps}\0name=x\0").into_bytes()
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().expect("tmp");
        let k = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&k).expect("mkdir");
        for (name, deps) in [
            ("virtio_ring", ""),
            ("virtio", "virtio_ring"),
            ("virtio_pci", "virtio_ring,virtio"),
            ("virtio_blk", "virtio"),
            ("virtio_console", "virtio,virtio_ring"),
            ("virtio-rng", "virtio"),
        ] {
            std::fs::write(k.join(format!("{name}.ko")), module(deps)).expect("write");
        }
        std::fs::write(dir.path().join("modules.builtin"), "kernel/drivers/firmware/qemu_fw_cfg.ko\n").expect("w");
        let names: Vec<String> = resolve(dir.path()).expect("resolve").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["virtio_ring", "virtio", "virtio_pci", "virtio_blk", "virtio_console", "virtio_rng"]);
        std::fs::write(dir.path().join("modules.builtin"), "").expect("w");
        let err = resolve(dir.path()).expect_err("qemu_fw_cfg is missing");
        assert!(err.to_string().contains("qemu_fw_cfg"), "{err}");
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("bin").expect("dir");
        cpio.file("init", 0o755, b"#!/bin/sh\n").expect("file");
        let bytes = cpio.finish().expect("finish");
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("070701"));
        assert!(text.contains("init\0") && text.contains("#!/bin/sh\n") && text.contains("TRAILER!!!"));
        assert_eq!(depends(&module("a,b-c")), ["a", "b_c"]);
        assert!(depends(b"nothing here").is_empty());
    }
}
