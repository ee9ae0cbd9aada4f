//! Running the real `kiln` binary with a clean environment: its own HOME
//! (so no user's config file is read) and no inherited KILN_* variables.

use kiln_tests::{binary, Coordinator};
use serde_json::Value;
use std::path::Path;
use tokio::process::Command;

/// What one run of `kiln` left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Assert the exit code; return self for more checks.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The error is one line, starts with `kiln: ` and mentions `needle`.
    #[track_caller]
    pub fn one_line_error(&self, needle: &str) {
        let text = self.stderr.trim_end();
        assert_eq!(text.lines().count(), 1, "one line on stderr, got:\n{text}");
        assert!(text.starts_with("kiln: "), "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
        assert!(!text.contains("panicked") && !text.contains("backtrace"), "{text}");
    }
}

/// A `kiln` bound to a server and a token through the environment.
pub struct Kiln {
    pub server: String,
    pub token: Option<String>,
    pub home: tempfile::TempDir,
}

impl Kiln {
    pub fn new(server: &str, token: Option<&str>) -> Self {
        Kiln {
            server: server.to_owned(),
            token: token.map(str::to_owned),
            home: tempfile::tempdir().expect("temp home"),
        }
    }

    /// As a fresh user of `c`.
    pub fn user(c: &Coordinator, name: &str) -> Self {
        Kiln::new(&c.url, Some(&c.token("user", name)))
    }

    /// As a fresh admin of `c`.
    pub fn admin(c: &Coordinator, name: &str) -> Self {
        Kiln::new(&c.url, Some(&c.token("admin", name)))
    }

    /// The command with HOME, KILN_SERVER and KILN_TOKEN set, nothing else
    /// of ours inherited.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bare(self.home.path());
        cmd.env("KILN_SERVER", &self.server);
        if let Some(token) = &self.token {
            cmd.env("KILN_TOKEN", token);
        }
        cmd.args(args);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        output(self.command(args)).await
    }

    /// `--json` run that must succeed; its stdout as JSON.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        self.run(&all).await.ok().json()
    }
}

/// `kiln` with a clean environment and `home` as HOME.
pub fn bare(home: &Path) -> Command {
    let mut cmd = Command::new(binary("kiln"));
    for var in ["KILN_SERVER", "KILN_TOKEN", "KILN_CONFIG", "XDG_CONFIG_HOME"] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home);
    cmd.kill_on_drop(true);
    cmd
}

pub async fn output(mut cmd: Command) -> Run {
    let out = cmd.output().await.expect("run kiln");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `id` of a JSON work request or artifact.
pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}
