//! The `system:*` keys: architectures, CPUs, memory, disk, executables.

use super::run::{find_on_path, run_with_timeout};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Debian's name for the host architecture: `dpkg --print-architecture`,
/// else a mapping of the architecture this agent was built for.
pub(crate) fn host_architecture(path_var: &OsStr) -> String {
    let from_dpkg = find_on_path("dpkg", path_var).and_then(|dpkg| {
        let mut cmd = Command::new(dpkg);
        cmd.arg("--print-architecture");
        match run_with_timeout(cmd, HELPER_TIMEOUT) {
            Ok(out) if out.status.success() => Some(out.stdout.trim().to_owned()).filter(|a| is_arch_name(a)),
            Ok(out) => {
                tracing::warn!(status = %out.status, stderr = %out.stderr.trim(), "dpkg --print-architecture failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to ask dpkg for the architecture");
                None
            }
        }
    });
    from_dpkg.unwrap_or_else(|| debian_arch(std::env::consts::ARCH, cfg!(target_endian = "little")).to_owned())
}

/// Debian architecture for a Rust `target_arch` (hard-float, 64-bit time
/// variants are what Debian ships today).
pub(crate) fn debian_arch(rust_arch: &str, little_endian: bool) -> &str {
    match (rust_arch, little_endian) {
        ("x86_64", _) => "amd64",
        ("x86", _) => "i386",
        ("aarch64", _) => "arm64",
        ("arm", _) => "armhf",
        ("powerpc64", true) => "ppc64el",
        ("powerpc64", false) => "ppc64",
        ("mips64", true) => "mips64el",
        ("loongarch64", _) => "loong64",
        (other, _) => other,
    }
}

/// The host architecture first, then what `arch-test` (when installed)
/// says can run here, through binfmt or natively (e.g. i386 on amd64).
pub(crate) fn architectures(host: &str, path_var: &OsStr) -> Vec<String> {
    let mut arches = vec![host.to_owned()];
    let Some(arch_test) = find_on_path("arch-test", path_var) else { return arches };
    // With no arguments it prints one runnable architecture per line.
    match run_with_timeout(Command::new(arch_test), HELPER_TIMEOUT) {
        Ok(out) => {
            for arch in out.stdout.lines().map(str::trim).filter(|a| is_arch_name(a)) {
                if !arches.iter().any(|a| a == arch) {
                    arches.push(arch.to_owned());
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "arch-test failed; advertising the host architecture only"),
    }
    arches
}

fn is_arch_name(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 32
        && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Online CPUs: `<sys_root>/devices/system/cpu/online` (a range list like
/// `0-3,8`), else `processor` lines in `<proc_root>/cpuinfo`, else what std
/// sees.
pub(crate) fn cpu_count(sys_root: &Path, proc_root: &Path) -> u64 {
    let online =
        std::fs::read_to_string(sys_root.join("devices/system/cpu/online")).ok().and_then(|t| count_cpu_list(&t));
    let cpuinfo = || {
        let text = std::fs::read_to_string(proc_root.join("cpuinfo")).ok()?;
        let n = text.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
        (n > 0).then_some(n as u64)
    };
    let std_count = || std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    online.or_else(cpuinfo).unwrap_or_else(std_count)
}

/// Counts a kernel CPU list (`0-3,8,10-11`); `None` if malformed.
pub(crate) fn count_cpu_list(text: &str) -> Option<u64> {
    let mut count = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
        count += last.checked_sub(first)? + 1;
    }
    (count > 0).then_some(count)
}

/// `MemTotal` from `<proc_root>/meminfo`, in bytes.
pub(crate) fn total_memory(proc_root: &Path) -> Option<u64> {
    let path = proc_root.join("meminfo");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "failed to read memory size"))
        .ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// Bytes an unprivileged writer could still use on the filesystem of
/// `data_dir` (or of its nearest existing parent, before first start).
pub(crate) fn available_disk(data_dir: &Path) -> Option<u64> {
    let existing = data_dir.ancestors().find(|p| p.exists())?;
    match nix::sys::statvfs::statvfs(existing) {
        // fsblkcnt_t and c_ulong are u64 here but narrower on 32-bit targets.
        #[allow(clippy::useless_conversion)]
        Ok(st) => u64::from(st.blocks_available()).checked_mul(u64::from(st.fragment_size())),
        Err(e) => {
            tracing::warn!(path = %existing.display(), error = %e, "failed to statvfs the data directory");
            None
        }
    }
}

/// The configured executables present on `path_var`, in configured order.
pub(crate) fn executables(wanted: &[String], path_var: &OsStr) -> Vec<String> {
    wanted.iter().filter(|name| find_on_path(name, path_var).is_some()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::run::tests::script;

    #[test]
    fn architectures_from_fake_dpkg_and_arch_test() {
        let bin = tempfile::tempdir().expect("tempdir");
        script(bin.path(), "dpkg", "echo arm64");
        script(bin.path(), "arch-test", "echo arm64; echo armhf; echo 'garbage line!'; echo armel");
        let path_var = bin.path().as_os_str();
        let host = host_architecture(path_var);
        assert_eq!(host, "arm64");
        assert_eq!(architectures(&host, path_var), ["arm64", "armhf", "armel"]);
        let empty = tempfile::tempdir().expect("tempdir");
        let fallback = host_architecture(empty.path().as_os_str());
        assert_eq!(fallback, debian_arch(std::env::consts::ARCH, cfg!(target_endian = "little")));
        assert_eq!(architectures("amd64", empty.path().as_os_str()), ["amd64"], "no arch-test installed");
        script(bin.path(), "dpkg", "echo 'dpkg: error' >&2; exit 2");
        assert_eq!(host_architecture(path_var), fallback);
    }

    #[test]
    fn maps_rust_architectures_to_debian_ones() {
        assert_eq!(debian_arch("x86_64", true), "amd64");
        assert_eq!(debian_arch("aarch64", true), "arm64");
        assert_eq!(debian_arch("powerpc64", true), "ppc64el");
        assert_eq!(debian_arch("riscv64", true), "riscv64");
        assert_eq!(debian_arch("s390x", false), "s390x");
    }

    #[test]
    fn cpus_and_memory_from_fixture_roots() {
        let root = tempfile::tempdir().expect("tempdir");
        let (proc_root, sys_root) = (root.path().join("proc"), root.path().join("sys"));
        std::fs::create_dir_all(sys_root.join("devices/system/cpu")).expect("mkdir");
        std::fs::create_dir_all(&proc_root).expect("mkdir");
        std::fs::write(proc_root.join("cpuinfo"), "processor\t: 0\nflags\t: x\n\nprocessor\t: 1\n").expect("write");
        assert_eq!(cpu_count(&sys_root, &proc_root), 2, "from cpuinfo when sysfs says nothing");
        std::fs::write(sys_root.join("devices/system/cpu/online"), "0-3,8,10-11\n").expect("write");
        assert_eq!(cpu_count(&sys_root, &proc_root), 7);
        assert_eq!(count_cpu_list("3-1"), None);
        std::fs::write(proc_root.join("meminfo"), "MemTotal:       24684096 kB\nMemFree: 1 kB\n").expect("write");
        assert_eq!(total_memory(&proc_root), Some(24_684_096 * 1024));
        std::fs::write(proc_root.join("meminfo"), "MemFree: 1 kB\n").expect("write");
        assert_eq!(total_memory(&proc_root), None);
    }

    #[test]
    fn disk_and_executables() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(available_disk(&dir.path().join("not/yet/created")).is_some_and(|b| b > 0));
        script(dir.path(), "sbuild", "true");
        script(dir.path(), "lintian", "true");
        let wanted: Vec<String> = ["dpkg-buildpackage", "sbuild", "autopkgtest", "lintian"].map(String::from).into();
        assert_eq!(executables(&wanted, dir.path().as_os_str()), ["sbuild", "lintian"]);
    }
}
