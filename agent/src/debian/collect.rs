//! After a Debian tool ends: read what it left in the output directory,
//! decide the result (a package that fails to build, lint or test is a
//! `failure`; a tool that could not do its job is an `error`) and name the
//! artifacts to upload, with their categories and data.

use super::jobs::Job;
use super::reports;
use crate::supervisor::task_dir::{Outcome, ShimStatus};
use kiln_shared::deb822::SourcePackage;
use kiln_shared::WorkResult;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub const SYSTEM_TARBALL_FILE: &str = "system.tar.zst";
pub const AUTOPKGTEST_SUMMARY: &str = "autopkgtest-summary";

/// An artifact to create from files of the output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    /// Its key in `output_data` (`binary_packages`, `upload`, …).
    pub role: &'static str,
    pub category: &'static str,
    pub data: Map<String, Value>,
    pub files: Vec<(String, PathBuf)>,
}

/// What the task comes to, before uploads.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub result: WorkResult,
    pub output: Map<String, Value>,
    pub errors: Vec<Value>,
    pub artifacts: Vec<Produced>,
}

impl Collected {
    fn new(result: WorkResult) -> Self {
        Collected { result, output: Map::new(), errors: Vec::new(), artifacts: Vec::new() }
    }

    fn error(code: &str, message: impl Into<String>) -> Self {
        let mut c = Collected::new(WorkResult::Error);
        c.errors.push(json!({"code": code, "message": message.into()}));
        c
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Regular files directly in `dir` (never through a symlink), sorted.
fn files_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn with_ext(files: &[(String, PathBuf)], exts: &[&str]) -> Vec<(String, PathBuf)> {
    files.iter().filter(|(n, _)| exts.iter().any(|e| n.ends_with(&format!(".{e}")))).cloned().collect()
}

/// Turn a finished tool into a result and the artifacts to upload.
pub fn collect(job: &Job, status: &ShimStatus, output: &Path, source: Option<&SourcePackage>) -> Collected {
    match status.outcome {
        Outcome::SetupFailed => {
            return Collected::error("sandbox-setup-failed", status.setup_error.clone().unwrap_or_default())
        }
        Outcome::TimedOut => {
            let mut c = collect_files_anyway(job, output, source);
            c.result = WorkResult::Failure;
            c.output.insert("timed_out".into(), json!(true));
            return c;
        }
        Outcome::Aborted => return Collected::new(WorkResult::Failure),
        Outcome::Exited => {}
    }
    let code = status.exit_code;
    match job {
        Job::Mmdebstrap { architecture, variant, repositories, .. } => {
            let tarball = output.join(SYSTEM_TARBALL_FILE);
            if code != Some(0) || !tarball.is_file() {
                return Collected::error("tool-failed", format!("mmdebstrap exited with {code:?}: see the log"));
            }
            let packages = std::fs::read_to_string(output.join("packages.txt")).unwrap_or_default();
            let package_names: Vec<&str> = packages.lines().filter_map(|l| l.split_whitespace().next()).collect();
            let os_release = std::fs::read_to_string(output.join("os-release")).unwrap_or_default();
            let first = &repositories[0];
            let codename = reports::os_release_field(&os_release, "VERSION_CODENAME").unwrap_or(first.suite.clone());
            let vendor = reports::os_release_field(&os_release, "ID").unwrap_or_else(|| "debian".into());
            let mut c = Collected::new(WorkResult::Success);
            let mut files = vec![(SYSTEM_TARBALL_FILE.to_owned(), tarball)];
            if output.join("packages.txt").is_file() {
                files.push(("packages.txt".into(), output.join("packages.txt")));
            }
            c.artifacts.push(Produced {
                role: "system_tarball",
                category: "kiln:system-tarball",
                data: obj(json!({
                    "vendor": vendor, "codename": codename, "architecture": architecture, "variant": variant,
                    "backends": ["unshare", "incus-lxc"], "mirror": first.mirror, "suite": first.suite,
                    "components": first.components, "packages": package_names.len(), "package_list": package_names,
                })),
                files,
            });
            c
        }
        Job::Sbuild { .. } => {
            let mut c = collect_files_anyway(job, output, source);
            let build_status = c.output.get("build_status").and_then(Value::as_str).map(str::to_owned);
            c.result = match (code, build_status.as_deref()) {
                (Some(0), Some("successful")) => WorkResult::Success,
                (_, Some("attempted" | "failed")) => WorkResult::Failure,
                (_, other) => {
                    let message = format!(
                        "sbuild exited with {code:?} and build status {}: see the log",
                        other.unwrap_or("unknown (no build log)")
                    );
                    c.errors.push(json!({"code": "tool-failed", "message": message}));
                    WorkResult::Error
                }
            };
            c
        }
        Job::Lintian { fail_on, .. } => {
            let text = std::fs::read_to_string(output.join("lintian.txt")).unwrap_or_default();
            if code != Some(0) {
                return Collected::error("tool-failed", format!("lintian exited with {code:?}: see the log"));
            }
            let summary = reports::lintian_summary(&text);
            let failed = reports::lintian_fails(&summary, fail_on);
            let mut c = Collected::new(if failed { WorkResult::Failure } else { WorkResult::Success });
            c.output.insert("summary".into(), json!(summary));
            c.output.insert("fail_on_severity".into(), json!(fail_on));
            c.artifacts.push(Produced {
                role: "lintian",
                category: "kiln:lintian",
                data: obj(json!({"summary": summary})),
                files: vec![("lintian.txt".into(), output.join("lintian.txt"))],
            });
            c
        }
        Job::Autopkgtest { fail_on_no_tests, .. } => {
            let mut c = collect_files_anyway(job, output, source);
            c.output.insert("exit_code".into(), json!(code));
            for a in &mut c.artifacts {
                a.data.insert("exit_code".into(), json!(code));
            }
            c.result = match code {
                Some(0 | 2) => WorkResult::Success,
                Some(4 | 6) => WorkResult::Failure,
                // No test ran: nothing was shown to work (DESIGN: not success by default).
                Some(8) if *fail_on_no_tests => WorkResult::Failure,
                Some(8) => WorkResult::Success,
                _ => {
                    let message = format!("autopkgtest exited with {code:?} (testbed or infrastructure failure)");
                    c.errors.push(json!({"code": "tool-failed", "message": message}));
                    WorkResult::Error
                }
            };
            if code == Some(8) {
                c.output.insert("no_tests".into(), json!(true));
            }
            c
        }
        Job::ExtractTestRestrictions { .. } => {
            if code != Some(0) {
                return Collected::error("tool-failed", format!("dpkg-source -x exited with {code:?}: see the log"));
            }
            let control = std::fs::read_to_string(output.join("tests-control")).ok();
            match reports::test_restrictions(control.as_deref()) {
                Ok(found) => {
                    let mut c = Collected::new(WorkResult::Success);
                    c.output.extend(found);
                    c
                }
                Err(e) => Collected::error("invalid-input", format!("debian/tests/control: {e}")),
            }
        }
    }
}

/// The artifacts of tools whose output matters even when they fail (a
/// failed build's log, a failed test's log).
fn collect_files_anyway(job: &Job, output: &Path, source: Option<&SourcePackage>) -> Collected {
    let mut c = Collected::new(WorkResult::Failure);
    let (name, version) = source.map(|s| (s.name.clone(), s.version.clone())).unwrap_or_default();
    match job {
        Job::Sbuild { host_architecture, any, .. } => {
            let files = files_in(output);
            let debs = with_ext(&files, &["deb", "udeb"]);
            let logs = with_ext(&files, &["build"]);
            let build_status = logs.first().and_then(|(_, p)| reports::sbuild_status(p));
            let arch = if *any { host_architecture.clone() } else { "all".into() };
            if let Some(status) = &build_status {
                c.output.insert("build_status".into(), json!(status));
            }
            if !debs.is_empty() {
                let packages: Vec<String> =
                    debs.iter().filter_map(|(n, _)| n.split('_').next().map(str::to_owned)).collect();
                c.artifacts.push(Produced {
                    role: "binary_packages",
                    category: "kiln:binary-packages",
                    data: obj(json!({"source": name, "version": version, "architecture": arch, "packages": packages})),
                    files: debs,
                });
            }
            let upload = with_ext(&files, &["changes", "buildinfo"]);
            if let Some((changes, _)) = upload.iter().find(|(n, _)| n.ends_with(".changes")) {
                c.artifacts.push(Produced {
                    role: "upload",
                    category: "kiln:upload",
                    data: obj(json!({"source": name, "version": version, "changes": changes})),
                    files: upload.clone(),
                });
            }
            if !logs.is_empty() {
                c.artifacts.push(Produced {
                    role: "build_log",
                    category: "kiln:package-build-log",
                    data: obj(json!({"source": name, "version": version, "architecture": arch,
                        "build_status": build_status})),
                    files: logs,
                });
            }
        }
        Job::Autopkgtest { .. } => {
            let summary = std::fs::read_to_string(output.join(AUTOPKGTEST_SUMMARY)).unwrap_or_default();
            let results = reports::autopkgtest_results(&summary);
            c.output.insert("results".into(), json!(results));
            let dir = output.join("autopkgtest");
            let mut files: Vec<(String, PathBuf)> = files_in(&dir);
            if output.join(AUTOPKGTEST_SUMMARY).is_file() {
                files.push(("summary".into(), output.join(AUTOPKGTEST_SUMMARY)));
            }
            if !files.is_empty() {
                c.artifacts.push(Produced {
                    role: "autopkgtest",
                    category: "kiln:autopkgtest",
                    data: obj(json!({"source": name, "version": version, "results": results})),
                    files,
                });
            }
        }
        _ => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn status(outcome: Outcome, code: Option<i32>) -> ShimStatus {
        ShimStatus {
            version: 1,
            outcome,
            exit_code: code,
            oom_killed: false,
            setup_error: None,
            memory_peak: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
        }
    }

    fn autopkgtest(fail_on_no_tests: bool) -> Job {
        Job::Autopkgtest { source: 1, binaries: vec![2], environment: 3, architecture: None, fail_on_no_tests }
    }

    #[test]
    fn maps_autopkgtest_exit_codes_with_care() {
        let out = tempfile::tempdir().expect("tmp");
        std::fs::write(out.path().join(AUTOPKGTEST_SUMMARY), "t1 PASS\nt2 SKIP needs-root\n").expect("write");
        let result = |job: &Job, code| collect(job, &status(Outcome::Exited, Some(code)), out.path(), None).result;
        let strict = autopkgtest(true);
        assert_eq!(result(&strict, 0), WorkResult::Success);
        assert_eq!(result(&strict, 2), WorkResult::Success, "skipped tests, none failed");
        assert_eq!(result(&strict, 4), WorkResult::Failure);
        assert_eq!(result(&strict, 6), WorkResult::Failure);
        assert_eq!(result(&strict, 8), WorkResult::Failure, "no test ran: not a success by default");
        assert_eq!(result(&autopkgtest(false), 8), WorkResult::Success);
        for infrastructure in [12, 16, 20] {
            assert_eq!(result(&strict, infrastructure), WorkResult::Error, "exit {infrastructure}");
        }
        let c = collect(&strict, &status(Outcome::Exited, Some(0)), out.path(), None);
        assert_eq!(c.output["results"]["t2"]["status"], json!("SKIP"));
        let timed_out = collect(&strict, &status(Outcome::TimedOut, None), out.path(), None);
        assert_eq!((timed_out.result, timed_out.output["timed_out"].clone()), (WorkResult::Failure, json!(true)));
    }

    #[test]
    fn an_sbuild_is_judged_by_its_build_log() {
        let job = Job::Sbuild { source: 1, environment: 2, host_architecture: "amd64".into(), any: true, all: false };
        let out = tempfile::tempdir().expect("tmp");
        let result = |code| collect(&job, &status(Outcome::Exited, Some(code)), out.path(), None);
        let none = result(1);
        assert_eq!(none.result, WorkResult::Error, "no build log: sbuild could not do its job");
        std::fs::write(out.path().join("p_1_amd64.build"), "...\nStatus: attempted\n").expect("write");
        let failed = result(1);
        assert_eq!(failed.result, WorkResult::Failure, "the package does not build");
        assert_eq!(failed.artifacts.iter().map(|a| a.role).collect::<Vec<_>>(), ["build_log"]);
        std::fs::write(out.path().join("p_1_amd64.build"), "Status: successful\n").expect("write");
        std::fs::write(out.path().join("p_1_amd64.deb"), "deb").expect("write");
        std::fs::write(out.path().join("p_1_amd64.changes"), "changes").expect("write");
        std::fs::write(out.path().join("p_1_amd64.buildinfo"), "buildinfo").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", out.path().join("evil.deb")).expect("symlink");
        let built = result(0);
        assert_eq!(built.result, WorkResult::Success);
        let roles: Vec<_> = built.artifacts.iter().map(|a| (a.role, a.files.len())).collect();
        assert_eq!(roles, [("binary_packages", 1), ("upload", 2), ("build_log", 1)], "a symlink is never taken");
        std::fs::write(out.path().join("p_1_amd64.build"), "Status: given-back\n").expect("write");
        assert_eq!(result(1).result, WorkResult::Error, "dependencies could not be installed");
    }
}
