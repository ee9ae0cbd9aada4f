//! The bubblewrap sandbox that tools which build no sandbox of their own
//! (lintian, `dpkg-source -x`) run in while they read untrusted packages:
//! every namespace unshared (no network), an unprivileged uid, the host's
//! `/usr` and the few `/etc` files dpkg and perl need, read-only; the task's
//! inputs read-only at `/input`, its output directory at `/output`, nothing
//! else of the host and nothing of another task.

use std::path::Path;

pub const INPUT: &str = "/input";
pub const OUTPUT: &str = "/output";
/// The unprivileged uid the tool runs as inside.
const UID: &str = "65534";

/// `bwrap … -- <command>`, reading `input` and writing `output`.
pub fn wrap(input: &Path, output: &Path, command: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid",
        UID,
        "--gid",
        UID,
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--ro-bind",
        "/etc/dpkg",
        "/etc/dpkg",
        "--ro-bind",
        "/etc/alternatives",
        "/etc/alternatives",
        "--ro-bind",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
        "--ro-bind-try",
        "/etc/perl",
        "/etc/perl",
        "--ro-bind-try",
        "/etc/lintianrc",
        "/etc/lintianrc",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--chdir",
        "/tmp",
        "--setenv",
        "HOME",
        "/tmp",
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(["--ro-bind".into(), input.display().to_string(), INPUT.into()]);
    argv.extend(["--bind".into(), output.display().to_string(), OUTPUT.into()]);
    argv.push("--".into());
    argv.extend(command.iter().cloned());
    argv
}

/// The output directory must be writable by the sandbox's uid.
pub fn open_output(output: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(output)?;
    std::fs::set_permissions(output, std::fs::Permissions::from_mode(0o777))
}

/// `path` as the sandbox sees it (a file directly in the input directory).
pub fn inside(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{INPUT}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs bubblewrap for real: the sandbox has no network, cannot read
    /// the host's /root or /etc/shadow, and writes only to /output.
    #[test]
    fn isolates_the_tool_from_the_network_and_the_host() {
        if Command::new("bwrap").arg("--version").output().is_err() {
            eprintln!("SKIPPED-BACKEND: bwrap is not installed (scripts/setup installs bubblewrap)");
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&input).expect("mkdir");
        std::fs::write(input.join("a.txt"), "input").expect("write");
        open_output(&output).expect("output");
        let script =
            "cat /input/a.txt > /output/copy; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /output/net; \
                      test -e /etc/shadow && echo shadow > /output/leak; test -e /root && echo root >> /output/leak; \
                      touch /input/x 2>/dev/null && echo writable >> /output/leak; true";
        let argv = wrap(&input, &output, &["sh".into(), "-c".into(), script.into()]);
        let status = Command::new(&argv[0]).args(&argv[1..]).status().expect("bwrap runs");
        assert!(status.success(), "{status}");
        assert_eq!(std::fs::read_to_string(output.join("copy")).expect("copy"), "input");
        assert_eq!(std::fs::read_to_string(output.join("net")).unwrap_or_default().trim(), "lo");
        assert!(!output.join("leak").exists(), "{}", std::fs::read_to_string(output.join("leak")).unwrap_or_default());
    }
}
