//! Running the small helper programs probes rely on (`dpkg`, `arch-test`,
//! `kiln-agent probe-backend`) with a deadline, and finding programs on a
//! given `PATH`.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Output beyond this is dropped: probes print a few lines.
const OUTPUT_CAP: u64 = 1 << 20;
const POLL: Duration = Duration::from_millis(20);
const SPAWN_TRIES: u32 = 10;
/// How long to wait for the pipes to close once the program has exited
/// (a leftover grandchild may hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("failed to run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("failed to wait for {program}: {source}")]
    Wait { program: String, source: std::io::Error },
    #[error("{program} did not finish within {} s and was killed", .timeout.as_secs())]
    TimedOut { program: String, timeout: Duration },
}

#[derive(Debug)]
pub(crate) struct RunOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` with no stdin, in its own process group, collecting its
/// output; after `timeout` the whole group is killed.
pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<RunOutput, RunError> {
    let program = describe(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = spawn(&mut cmd).map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            outcome => {
                let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
                // The group may already be gone; either way we only reap our child.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = child.wait();
                return Err(match outcome {
                    Err(source) => RunError::Wait { program, source },
                    _ => RunError::TimedOut { program, timeout },
                });
            }
        }
    };
    let text = |rx: mpsc::Receiver<Vec<u8>>| {
        String::from_utf8_lossy(&rx.recv_timeout(DRAIN_GRACE).unwrap_or_default()).into_owned()
    };
    Ok(RunOutput { status, stdout: text(stdout), stderr: text(stderr) })
}

/// Spawns, retrying briefly on ETXTBSY: a program written just before (a
/// freshly installed agent, a test's script) can still be open for writing
/// in a child another thread forked meanwhile, until that child execs.
fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < SPAWN_TRIES => {
                tries += 1;
                std::thread::sleep(POLL);
            }
            other => return other,
        }
    }
}

/// Reads a pipe to its end (or the cap) on a thread of its own, so a full
/// stderr pipe cannot block the program while we read stdout.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            // A read error leaves what was read so far, which is all we can report.
            let _ = pipe.take(OUTPUT_CAP).read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
    }
    rx
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    format!("`{}`", words.join(" "))
}

/// `name` as `execvp` would find it on `path_var`: a regular file (after
/// symlinks) with an execute bit. Names containing `/` are not looked up.
pub(crate) fn find_on_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    std::env::split_paths(path_var).filter(|dir| dir.is_absolute()).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes an executable shell script `dir/name`.
    pub(crate) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn finds_only_executable_files_on_the_given_path() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        script(b.path(), "sbuild", "true");
        std::fs::write(a.path().join("sbuild"), "not executable").expect("write");
        std::fs::create_dir(a.path().join("lintian")).expect("a directory is not a program");
        let path_var = std::env::join_paths([a.path(), b.path()]).expect("join");
        assert_eq!(find_on_path("sbuild", &path_var), Some(b.path().join("sbuild")));
        assert_eq!(find_on_path("lintian", &path_var), None);
        assert_eq!(find_on_path("../b/sbuild", &path_var), None);
        assert_eq!(find_on_path("sbuild", OsStr::new("relative/dir")), None);
    }

    #[test]
    fn collects_output_and_enforces_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = script(dir.path(), "ok", "echo out; echo err >&2; exit 3");
        let out = run_with_timeout(Command::new(&ok), Duration::from_secs(10)).expect("runs");
        assert_eq!((out.status.code(), out.stdout.as_str(), out.stderr.as_str()), (Some(3), "out\n", "err\n"));
        let slow = script(dir.path(), "slow", "sleep 30 & sleep 30");
        let start = Instant::now();
        let err = run_with_timeout(Command::new(&slow), Duration::from_millis(300)).expect_err("too slow");
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "the background sleep must not hold us");
        let err =
            run_with_timeout(Command::new(dir.path().join("missing")), Duration::from_secs(1)).expect_err("no such");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
