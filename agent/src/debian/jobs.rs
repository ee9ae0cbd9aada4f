//! What each Debian task runs: its `task_data` read into a [`Job`], and the
//! job turned into the command the shim runs on the host (DESIGN §5: tools
//! that build their own sandbox from the environment tarball are driven on
//! the host; lintian and `dpkg-source -x` run in a bubblewrap sandbox).
//! The coordinator validated `task_data` already; what is checked again here
//! is what ends up on a command line.

use super::sandbox;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A Debian task, read from its `task_data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Mmdebstrap {
        architecture: String,
        variant: String,
        extra_packages: Vec<String>,
        repositories: Vec<Repository>,
    },
    Sbuild {
        source: i64,
        environment: i64,
        host_architecture: String,
        any: bool,
        all: bool,
    },
    Lintian {
        source: Option<i64>,
        binaries: Vec<i64>,
        fail_on: String,
    },
    Autopkgtest {
        source: i64,
        binaries: Vec<i64>,
        environment: i64,
        architecture: Option<String>,
        fail_on_no_tests: bool,
    },
    ExtractTestRestrictions {
        source: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub mirror: String,
    pub suite: String,
    pub components: Vec<String>,
}

/// A command line and the environment variables it adds.
pub type Command = (Vec<String>, Vec<(String, String)>);

/// Where a job's files are on the host.
#[derive(Debug, Clone)]
pub struct Paths {
    pub input: PathBuf,
    pub output: PathBuf,
    pub home: PathBuf,
    /// The environment's tarball, for jobs that use one.
    pub tarball: Option<PathBuf>,
    pub dsc: Option<PathBuf>,
    pub debs: Vec<PathBuf>,
    /// The environment's codename, for the `.changes` Distribution.
    pub codename: Option<String>,
}

/// sbuild's extra configuration file, in the task's home directory.
pub const SBUILD_CONFIG_FILE: &str = "sbuild.conf";

/// A word that may go on a command line or into a sources line.
fn word_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._+-~/:".contains(c))
}

fn string(data: &Map<String, Value>, key: &str) -> Result<String, String> {
    let value = data.get(key).and_then(Value::as_str).ok_or_else(|| format!("{key} is missing or not a string"))?;
    word_ok(value).then(|| value.to_owned()).ok_or_else(|| format!("{key}: {value:?} is not acceptable here"))
}

fn id(data: &Map<String, Value>, key: &str) -> Result<i64, String> {
    data.get(key).and_then(Value::as_i64).ok_or_else(|| format!("{key} is missing or not an artifact id"))
}

fn ids(data: &Map<String, Value>, key: &str) -> Result<Vec<i64>, String> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_i64().ok_or_else(|| format!("{key} must list artifact ids"))).collect()
        }
        Some(_) => Err(format!("{key} must be a list of artifact ids")),
    }
}

fn words(value: Option<&Value>, key: &str) -> Result<Vec<String>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{key} must be a list")),
    };
    items
        .iter()
        .map(|v| match v.as_str() {
            Some(s) if word_ok(s) => Ok(s.to_owned()),
            _ => Err(format!("{key}: {v} is not acceptable")),
        })
        .collect()
}

fn object<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, String> {
    data.get(key).and_then(Value::as_object).ok_or_else(|| format!("{key} is missing or not an object"))
}

impl Job {
    pub fn parse(task: &str, data: &Map<String, Value>) -> Result<Job, String> {
        match task {
            "mmdebstrap" => {
                let options = object(data, "bootstrap_options")?;
                let repositories = data
                    .get("bootstrap_repositories")
                    .and_then(Value::as_array)
                    .ok_or("bootstrap_repositories must be a list")?
                    .iter()
                    .map(|r| {
                        let r = r.as_object().ok_or("each of bootstrap_repositories must be an object")?;
                        let mirror = string(r, "mirror")?;
                        if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
                            return Err(format!("mirror {mirror:?} must be an http(s) URL"));
                        }
                        let components = words(r.get("components"), "components")?;
                        Ok(Repository { mirror, suite: string(r, "suite")?, components })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                if repositories.is_empty() {
                    return Err("bootstrap_repositories must name at least one repository".into());
                }
                Ok(Job::Mmdebstrap {
                    architecture: string(options, "architecture")?,
                    variant: string(options, "variant")?,
                    extra_packages: words(options.get("extra_packages"), "extra_packages")?,
                    repositories,
                })
            }
            "sbuild" => {
                let input = object(data, "input")?;
                let components = words(data.get("build_components"), "build_components")?;
                let (any, all) = if components.is_empty() {
                    (true, false)
                } else {
                    (components.iter().any(|c| c == "any"), components.iter().any(|c| c == "all"))
                };
                Ok(Job::Sbuild {
                    source: id(input, "source_artifact")?,
                    environment: id(data, "environment")?,
                    host_architecture: string(data, "host_architecture")?,
                    any,
                    all,
                })
            }
            "lintian" => {
                let input = object(data, "input")?;
                let source = input.get("source_artifact").and_then(Value::as_i64);
                let binaries = ids(input, "binary_artifacts")?;
                if source.is_none() && binaries.is_empty() {
                    return Err("lintian needs input.source_artifact or input.binary_artifacts".into());
                }
                let fail_on = data.get("fail_on_severity").and_then(Value::as_str).unwrap_or("error").to_owned();
                Ok(Job::Lintian { source, binaries, fail_on })
            }
            "autopkgtest" => {
                let input = object(data, "input")?;
                Ok(Job::Autopkgtest {
                    source: id(input, "source_artifact")?,
                    binaries: ids(input, "binary_artifacts")?,
                    environment: id(data, "environment")?,
                    architecture: data.get("host_architecture").and_then(Value::as_str).map(str::to_owned),
                    fail_on_no_tests: data.get("fail_on_no_tests").and_then(Value::as_bool).unwrap_or(true),
                })
            }
            "extract_test_restrictions" => {
                Ok(Job::ExtractTestRestrictions { source: id(object(data, "input")?, "source_artifact")? })
            }
            other => Err(format!("{other:?} is not a Debian task")),
        }
    }

    /// The environment tarball the job's tool reads, if any.
    pub fn environment(&self) -> Option<i64> {
        match self {
            Job::Sbuild { environment, .. } | Job::Autopkgtest { environment, .. } => Some(*environment),
            _ => None,
        }
    }

    /// The configuration file the job's tool reads ([`SBUILD_CONFIG_FILE`]),
    /// if it needs one: bookworm's sbuild ignores `TMPDIR` and unpacks its
    /// chroot where `$unshare_tmpdir_template` says (/tmp by default), so
    /// this points it at the task's own temporary directory `tmp`.
    pub fn config_file(&self, tmp: &Path) -> Option<String> {
        match self {
            Job::Sbuild { .. } => {
                let template = tmp.join("tmp.sbuild.XXXXXXXXXX").display().to_string();
                let quoted = template.replace('\\', "\\\\").replace('\'', "\\'");
                Some(format!("# Written by kiln-agent for this task.\n$unshare_tmpdir_template = '{quoted}';\n1;\n"))
            }
            _ => None,
        }
    }

    /// `(source package, binary packages)` to fetch.
    pub fn inputs(&self) -> (Option<i64>, Vec<i64>) {
        match self {
            Job::Mmdebstrap { .. } => (None, Vec::new()),
            Job::Sbuild { source, .. } | Job::ExtractTestRestrictions { source } => (Some(*source), Vec::new()),
            Job::Lintian { source, binaries, .. } => (*source, binaries.clone()),
            Job::Autopkgtest { source, binaries, .. } => (Some(*source), binaries.clone()),
        }
    }

    /// The command the shim runs, and the environment variables it adds.
    pub fn command(&self, p: &Paths) -> Result<Command, String> {
        let path = |p: &Path| p.display().to_string();
        let need_tarball = || p.tarball.as_deref().map(path).ok_or("the environment tarball is missing");
        let need_dsc = || p.dsc.as_deref().ok_or("the source package has no .dsc");
        let mut env = vec![("KILN_OUTPUT".to_owned(), path(&p.output))];
        let argv = match self {
            Job::Mmdebstrap { architecture, variant, extra_packages, repositories } => {
                let mut argv = vec![
                    "mmdebstrap".to_owned(),
                    "--mode=unshare".into(),
                    format!("--variant={variant}"),
                    format!("--architectures={architecture}"),
                ];
                if !extra_packages.is_empty() {
                    argv.push(format!("--include={}", extra_packages.join(",")));
                }
                // Record what the tarball holds, for the artifact's data.
                argv.push(
                    "--customize-hook=chroot \"$1\" dpkg-query -W -f='${Package} ${Version}\\n' > \"$KILN_OUTPUT/packages.txt\""
                        .into(),
                );
                argv.push("--customize-hook=cp \"$1/etc/os-release\" \"$KILN_OUTPUT/os-release\"".into());
                argv.push(repositories[0].suite.clone());
                argv.push(path(&p.output.join(super::collect::SYSTEM_TARBALL_FILE)));
                for r in repositories {
                    argv.push(format!("deb {} {} {}", r.mirror, r.suite, r.components.join(" ")).trim().to_owned());
                }
                argv
            }
            Job::Sbuild { host_architecture, any, all, .. } => {
                env.push(("SBUILD_CONFIG".to_owned(), path(&p.home.join(SBUILD_CONFIG_FILE))));
                let flag = |on: bool, what: &str| if on { format!("--{what}") } else { format!("--no-{what}") };
                vec![
                    "sbuild".to_owned(),
                    "--verbose".into(),
                    "--chroot-mode=unshare".into(),
                    format!("--chroot={}", need_tarball()?),
                    format!("--dist={}", p.codename.as_deref().unwrap_or("unstable")),
                    format!("--arch={host_architecture}"),
                    flag(*any, "arch-any"),
                    flag(*all, "arch-all"),
                    "--no-run-lintian".into(),
                    "--no-run-autopkgtest".into(),
                    "--no-run-piuparts".into(),
                    "--no-source-only-changes".into(),
                    format!("--build-dir={}", path(&p.output)),
                    path(need_dsc()?),
                ]
            }
            Job::Lintian { .. } => {
                let mut inner = vec![
                    "bash".to_owned(),
                    "-c".into(),
                    "set -o pipefail; lintian --fail-on none --display-level '>=pedantic' --show-overrides \"$@\" 2>&1 | tee /output/lintian.txt".into(),
                    "lintian".into(),
                ];
                inner.extend(p.dsc.iter().chain(&p.debs).map(|f| sandbox::inside(f)));
                sandbox::wrap(&p.input, &p.output, &inner)
            }
            Job::Autopkgtest { architecture, .. } => {
                let mut argv = vec![
                    "autopkgtest".to_owned(),
                    "-U".into(),
                    format!("--output-dir={}", path(&p.output.join("autopkgtest"))),
                    format!("--summary-file={}", path(&p.output.join(super::collect::AUTOPKGTEST_SUMMARY))),
                ];
                argv.extend(p.debs.iter().map(|d| path(d)));
                argv.push(path(need_dsc()?));
                argv.extend(["--".into(), "unshare".into(), "--tarball".into(), need_tarball()?]);
                if let Some(arch) = architecture {
                    argv.extend(["--arch".into(), arch.clone()]);
                }
                argv
            }
            Job::ExtractTestRestrictions { .. } => {
                let script = "dpkg-source --no-check --no-copy -x \"$1\" /tmp/src >&2 && \
                              if [ -f /tmp/src/debian/tests/control ]; then cp /tmp/src/debian/tests/control /output/tests-control; fi";
                let inner =
                    vec!["sh".to_owned(), "-c".into(), script.into(), "extract".into(), sandbox::inside(need_dsc()?)];
                sandbox::wrap(&p.input, &p.output, &inner)
            }
        };
        Ok((argv, env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn reads_task_data_and_refuses_what_could_reach_a_command_line() {
        let ok = map(
            json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd", "extra_packages": ["lintian"]},
            "bootstrap_repositories": [{"mirror": "http://deb.debian.org/debian", "suite": "bookworm", "components": ["main"]}]}),
        );
        let job = Job::parse("mmdebstrap", &ok).expect("valid");
        let paths = Paths {
            input: "/i".into(),
            output: "/o".into(),
            home: "/h".into(),
            tarball: None,
            dsc: None,
            debs: vec![],
            codename: None,
        };
        let (argv, _) = job.command(&paths).expect("command");
        assert!(argv.contains(&"--include=lintian".to_owned()), "{argv:?}");
        assert_eq!(argv.last().map(String::as_str), Some("deb http://deb.debian.org/debian bookworm main"));
        let evil = map(json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd; rm -rf /"},
            "bootstrap_repositories": [{"mirror": "http://x", "suite": "bookworm", "components": ["main"]}]}));
        assert!(Job::parse("mmdebstrap", &evil).expect_err("refused").contains("variant"));
        let file = map(json!({"bootstrap_options": {"architecture": "amd64", "variant": "buildd"},
            "bootstrap_repositories": [{"mirror": "file:///etc", "suite": "bookworm", "components": ["main"]}]}));
        assert!(Job::parse("mmdebstrap", &file).expect_err("refused").contains("http"));
        let sbuild = map(json!({"input": {"source_artifact": 3}, "environment": 4, "host_architecture": "amd64",
            "build_components": ["all"], "backend": "unshare"}));
        assert_eq!(
            Job::parse("sbuild", &sbuild).expect("valid"),
            Job::Sbuild { source: 3, environment: 4, host_architecture: "amd64".into(), any: false, all: true }
        );
        assert!(Job::parse("lintian", &map(json!({"input": {}, "environment": 1}))).is_err());
    }

    #[test]
    fn sbuild_is_told_to_unpack_under_the_tasks_temporary_directory() {
        let job = Job::Sbuild { source: 1, environment: 2, host_architecture: "amd64".into(), any: true, all: false };
        let tmp = Path::new("/tmp/kiln-tool-it's \\ odd");
        let config = job.config_file(tmp).expect("sbuild has a config file");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(SBUILD_CONFIG_FILE);
        std::fs::write(&file, config).expect("write");
        // sbuild evaluates the file as Perl: read it back the same way.
        let out = std::process::Command::new("perl")
            .args(["-e", "our $unshare_tmpdir_template; do $ARGV[0] or die $@; print $unshare_tmpdir_template"])
            .arg(&file)
            .output()
            .expect("perl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp/kiln-tool-it's \\ odd/tmp.sbuild.XXXXXXXXXX");
        assert_eq!(Job::ExtractTestRestrictions { source: 1 }.config_file(tmp), None);
    }
}
