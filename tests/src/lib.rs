//! Harness for Kiln's end-to-end tests: start the real `kiln-coordinator`
//! binary on port 0 with a temporary data directory, make tokens with its
//! command line, kill it (`SIGKILL`) and restart it on the same data, and
//! drive the REST API as a user or as a worker would.

pub mod agent;
pub mod debian;
pub mod images;
pub mod incus;
pub mod system_images;
pub mod tls;
pub mod work;

use kiln_shared::client::Client;
use kiln_shared::worker::Registration;
use kiln_shared::WorkerRole;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Directory holding the workspace's built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps.
    let exe = std::env::current_exe().expect("current test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// Path of a workspace binary; panics with the command to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A running coordinator process with its own data directory.
pub struct Coordinator {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub url: String,
    /// The CA the harness's clients trust, for a coordinator serving HTTPS.
    pub ca_certificate: Option<PathBuf>,
    extra_args: Vec<String>,
    port: u16,
}

impl Coordinator {
    /// Start on a free port with default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Start with extra `serve` arguments (e.g. `--heartbeat-grace 2`).
    pub fn start_with(extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut c = Coordinator {
            child: None,
            data_dir,
            url: String::new(),
            ca_certificate: None,
            extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            port: 0,
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new(binary("kiln-coordinator"))
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["serve", "--listen", &listen])
            .args(&self.extra_args)
            .env("KILN_LOG", std::env::var("KILN_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kiln-coordinator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("kiln-coordinator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from kiln-coordinator: {line:?}"))
            .to_owned();
        self.port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        self.url = url;
        self.child = Some(child);
    }

    /// The coordinator process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`, then start again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Run an administrative subcommand against this data dir; returns stdout.
    pub fn admin_command(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary("kiln-coordinator"))
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(args)
            .output()
            .expect("run kiln-coordinator")
    }

    /// Create a token with `token create` and return it.
    pub fn token(&self, role: &str, name: &str) -> String {
        let out = self.admin_command(&["token", "create", "--role", role, "--name", name]);
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    }

    pub fn client(&self, token: &str) -> Client {
        Client::with_ca_certificate(&self.url, Some(token.to_owned()), self.ca_certificate.as_deref()).expect("client")
    }

    pub fn anonymous(&self) -> Client {
        Client::with_ca_certificate(&self.url, None, self.ca_certificate.as_deref()).expect("client")
    }

    /// An admin client (creates a fresh admin token).
    pub fn admin(&self) -> Client {
        let name = format!("admin-{}", random_suffix());
        self.client(&self.token("admin", &name))
    }

    /// A user client with the given token name.
    pub fn user(&self, name: &str) -> Client {
        self.client(&self.token("user", name))
    }
}

/// Run the `kiln` CLI against `c` as the holder of `token`, with an empty
/// home (no config file of the machine's) and nothing else of the caller's
/// environment but `PATH`.
pub fn kiln_cli(c: &Coordinator, token: &str, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().expect("home");
    Command::new(binary("kiln"))
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KILN_SERVER", &c.url)
        .env("KILN_TOKEN", token)
        .envs(c.ca_certificate.as_ref().map(|ca| ("KILN_CA_CERTIFICATE", ca)))
        .args(args)
        .output()
        .expect("run kiln")
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{nanos:08x}{n}")
}

/// Metadata of a typical amd64 build host that runs `noop` and `command`
/// with the unshare backend.
pub fn amd64_metadata() -> Map<String, Value> {
    json!({
        "system:host_architecture": "amd64",
        "system:architectures": ["amd64", "i386"],
        "system:cpu_count": 2,
        "system:total_physical_memory": 8u64 << 30,
        "system:available_disk_space": 100u64 << 30,
        "system:executables": ["sbuild"],
        "system:worker_role": "worker",
        "executor:unshare:available": true,
        "executor:qemu:available": false,
        "noop:version": 1,
        "command:version": 1,
    })
    .as_object()
    .cloned()
    .expect("object")
}

/// Register a worker through the API (enabled with an enrollment token made
/// here), publish `metadata`, and return its client.
pub async fn enrolled_worker(c: &Coordinator, name: &str, metadata: Map<String, Value>) -> Client {
    let enrollment = c.token("enrollment", &format!("enroll-{name}"));
    let token = format!("{:0<64}", format!("tok{name}{}", random_suffix())).chars().take(64).collect::<String>();
    let reg = Registration {
        name: name.to_owned(),
        token: token.clone(),
        role: WorkerRole::Worker,
        enrollment_token: Some(enrollment),
    };
    let worker = c.anonymous().register(&reg).await.expect("register");
    assert!(worker.enabled, "an enrollment token enables at once");
    let client = c.client(&token);
    client.put_metadata(&metadata).await.expect("metadata");
    client
}

/// Poll `f` until it returns `Some`, for at most `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// JSON object literal helper.
pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Assert that `result` is the coordinator's error reply with `status` and
/// `code` and a non-empty message; return the message for closer checks.
pub fn expect_api_error<T: std::fmt::Debug>(
    result: Result<T, kiln_shared::client::ClientError>,
    status: u16,
    code: &str,
) -> String {
    match result {
        Ok(value) => panic!("expected {status} {code}, got success: {value:?}"),
        Err(kiln_shared::client::ClientError::Api { status: got, body }) => {
            assert_eq!(got.as_u16(), status, "status of {body:?}");
            assert_eq!(body.error, code, "error code of {body:?}");
            assert!(!body.message.trim().is_empty(), "an empty message with {code}");
            body.message
        }
        Err(other) => panic!("expected {status} {code}, got {other}"),
    }
}

/// Assert that `resp` is an error reply with `status` and the JSON body
/// `{"error": code, "message": text}` (text non-empty); return the message.
pub async fn expect_error_reply(resp: reqwest::Response, status: u16, code: &str) -> String {
    let got = resp.status().as_u16();
    let text = resp.text().await.expect("read the error body");
    assert_eq!(got, status, "status; body {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    assert_eq!(body.get("error").and_then(Value::as_str), Some(code), "error code in {text}");
    let message = body.get("message").and_then(Value::as_str).unwrap_or_else(|| panic!("no message in {text}"));
    assert!(!message.trim().is_empty(), "an empty message in {text}");
    message.to_owned()
}

/// Send `request` (a whole HTTP/1.1 request, e.g. with a path no URL library
/// would leave alone) over a fresh TCP connection; return the status and
/// the body as text. The request should say `Connection: close`.
pub async fn raw_http(base_url: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the coordinator");
    stream.write_all(request.as_bytes()).await.expect("send the raw request");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("the coordinator answers a raw request within 10 s")
        .expect("read the raw reply");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status =
        reply.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Root-only tests (namespaces, cgroups, mounts) run when this returns
/// `None`; otherwise they print `SKIPPED-BACKEND: <reason>` and return,
/// which CI (CI=true) turns into a failure.
pub fn privileged_skip_reason() -> Option<String> {
    if std::env::var_os("KILN_PRIVILEGED_TESTS").is_none() {
        return Some("KILN_PRIVILEGED_TESTS is not set (scripts/test sets it)".into());
    }
    if !nix_is_root() {
        return Some("not running as root".into());
    }
    images::busybox_missing()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Skip a privileged test with the marker CI looks for.
#[macro_export]
macro_rules! require_privileged {
    () => {
        if let Some(reason) = $crate::privileged_skip_reason() {
            println!("SKIPPED-BACKEND: {reason}");
            return;
        }
    };
}
