//! A real `kiln-agent` process for end-to-end tests: its own data directory,
//! enrolled with an enrollment token, log kept in a file for assertions.

use crate::{binary, Coordinator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Agent {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub name: String,
    pub log_path: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// Start an agent for `c`, enrolled at once; `extra` are more flags.
    pub fn start(c: &Coordinator, name: &str, extra: &[&str]) -> Self {
        let data_dir = tempfile::Builder::new().prefix("kiln-agent-test-").tempdir().expect("agent data dir");
        Self::start_in(c, name, extra, data_dir)
    }

    /// Like `start`, with the agent's data directory inside `data_dir`.
    pub fn start_in(c: &Coordinator, name: &str, extra: &[&str], data_dir: tempfile::TempDir) -> Self {
        let enrollment = c.token("enrollment", &format!("enroll-{name}-{}", crate::random_suffix()));
        let log_path = data_dir.path().join("agent.log");
        let mut args: Vec<String> = vec![
            "--coordinator".into(),
            c.url.clone(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data_dir.path().to_string_lossy().into_owned(),
            "--enrollment-token".into(),
            enrollment,
        ];
        // The host's free disk must not change what a test sees: with the
        // 10 GiB default, a CI host a little short of space evicts every
        // cached image after each task. A test may pass its own value;
        // disk-pressure eviction itself is tested in
        // agent/src/image_cache/policy.rs.
        if !extra.contains(&"--min-free-disk") {
            args.extend(["--min-free-disk".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut agent = Agent { child: None, data_dir, name: name.to_owned(), log_path, args };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("agent log");
        let child = Command::new(binary("kiln-agent"))
            .args(&self.args)
            .arg("run")
            .env("KILN_LOG", std::env::var("KILN_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn kiln-agent");
        self.child = Some(child);
    }

    /// `kill -9` the agent (its shims keep running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The agent process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the agent has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- kiln-agent {} log ----\n{}", self.name, self.log());
        }
    }
}
