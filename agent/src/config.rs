//! `agent.toml` (DESIGN §8): typed, validated once, unknown keys refused.
//! Every key also has a command-line flag, which wins over the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/kiln/agent.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Worker,
    Signing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Coordinator URL, e.g. `https://coordinator.example:8443`.
    #[serde(default)]
    pub coordinator: String,
    /// CA certificates (PEM) to trust for an `https://` coordinator, beside
    /// the system's (Kiln addition).
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// Worker name; default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// May tasks that ask for network get it?
    #[serde(default)]
    pub allow_network: bool,
    /// Seconds, for tasks that set no timeout.
    #[serde(default = "default_timeout")]
    pub default_timeout: u64,
    /// Executables whose presence on PATH is advertised.
    #[serde(default = "default_executables")]
    pub executables: Vec<String>,
    /// Enrollment token for the first registration (Kiln addition).
    #[serde(default)]
    pub enrollment_token: Option<String>,
    #[serde(default)]
    pub image_cache: ImageCacheConfig,
    #[serde(default)]
    pub backends: BackendsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCacheConfig {
    #[serde(default = "default_max_images")]
    pub max_images: usize,
    /// Keep at least this much free on the data dir's filesystem.
    #[serde(default = "default_min_free_disk", deserialize_with = "kiln_shared::size::deserialize")]
    pub min_free_disk: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsConfig {
    #[serde(default = "default_backends")]
    pub enabled: Vec<String>,
}

/// Per-task resource limits (Kiln addition).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory limit of a task (a task's `min_memory` raises it).
    #[serde(default = "default_memory", deserialize_with = "kiln_shared::size::deserialize")]
    pub memory: u64,
    /// Most processes and threads in one task.
    #[serde(default = "default_pids")]
    pub pids: u64,
    /// CPUs a task may use (0: all).
    #[serde(default)]
    pub cpus: f64,
    /// Quota of a task's writable layer (a task's `min_disk` raises it).
    #[serde(default = "default_disk", deserialize_with = "kiln_shared::size::deserialize")]
    pub disk: u64,
    /// Size of the task's /tmp (tmpfs, counted against its memory).
    #[serde(default = "default_tmp", deserialize_with = "kiln_shared::size::deserialize")]
    pub tmp: u64,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/kiln-agent")
}
fn default_role() -> Role {
    Role::Worker
}
fn default_concurrency() -> u32 {
    1
}
fn default_timeout() -> u64 {
    14_400
}
fn default_executables() -> Vec<String> {
    ["dpkg-buildpackage", "sbuild", "autopkgtest", "lintian"].map(String::from).to_vec()
}
fn default_max_images() -> usize {
    10
}
fn default_min_free_disk() -> u64 {
    10 << 30
}
fn default_backends() -> Vec<String> {
    ["unshare", "incus-lxc", "incus-vm", "qemu"].map(String::from).to_vec()
}
fn default_memory() -> u64 {
    4 << 30
}
fn default_pids() -> u64 {
    4096
}
fn default_disk() -> u64 {
    20 << 30
}
fn default_tmp() -> u64 {
    1 << 30
}

impl Default for ImageCacheConfig {
    fn default() -> Self {
        ImageCacheConfig { max_images: default_max_images(), min_free_disk: default_min_free_disk() }
    }
}
impl Default for BackendsConfig {
    fn default() -> Self {
        BackendsConfig { enabled: default_backends() }
    }
}
impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory: default_memory(),
            pids: default_pids(),
            cpus: 0.0,
            disk: default_disk(),
            tmp: default_tmp(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            coordinator: String::new(),
            ca_certificate: None,
            name: None,
            data_dir: default_data_dir(),
            role: default_role(),
            concurrency: default_concurrency(),
            allow_network: false,
            default_timeout: default_timeout(),
            executables: default_executables(),
            enrollment_token: None,
            image_cache: ImageCacheConfig::default(),
            backends: BackendsConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration in {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

pub const KNOWN_BACKENDS: &[&str] = &["unshare", "incus-lxc", "incus-vm", "qemu"];

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// Checks that need every override applied first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.coordinator.is_empty() {
            return invalid("`coordinator` (or --coordinator) is required".into());
        }
        if !(self.coordinator.starts_with("http://") || self.coordinator.starts_with("https://")) {
            return invalid(format!("coordinator {:?} must be an http:// or https:// URL", self.coordinator));
        }
        if let Some(path) = &self.ca_certificate {
            kiln_shared::client::load_ca_certificates(path).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(problem) =
            (self.role == Role::Signing).then(|| crate::signing::transport_problem(&self.coordinator)).flatten()
        {
            return invalid(problem);
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return invalid("concurrency must be between 1 and 1024".into());
        }
        if self.default_timeout == 0 {
            return invalid("default_timeout must be at least 1 second".into());
        }
        if self.image_cache.max_images == 0 {
            return invalid("image_cache.max_images must be at least 1".into());
        }
        if let Some(b) = self.backends.enabled.iter().find(|b| !KNOWN_BACKENDS.contains(&b.as_str())) {
            return invalid(format!("backends.enabled: unknown backend {b:?} (known: {})", KNOWN_BACKENDS.join(", ")));
        }
        if self.limits.memory < (16 << 20) || self.limits.pids < 16 || self.limits.cpus < 0.0 {
            return invalid("limits: memory must be at least 16MiB, pids at least 16, cpus not negative".into());
        }
        if let Some(name) = &self.name {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return invalid(format!("name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"));
            }
        }
        Ok(())
    }

    /// Said at start and by validate-config: a worker agent may talk plain
    /// HTTP to a remote coordinator (a signing agent refuses to), but its
    /// token and its tasks' data then cross the network in the clear.
    pub fn cleartext_warning(&self) -> Option<String> {
        crate::signing::transport_problem(&self.coordinator)?;
        Some(format!(
            "the coordinator {:?} is plain http:// to another host: this agent's token and its tasks' data travel \
             unencrypted; serve HTTPS (tls_certificate in coordinator.toml) and use an https:// URL",
            self.coordinator
        ))
    }

    /// The worker name: configured, else the host name.
    pub fn worker_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .map(|h| h.split('.').next().unwrap_or("kiln-agent").to_owned())
                .unwrap_or_else(|| "kiln-agent".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example_and_refuses_unknown_keys() {
        let text = r#"
coordinator = "https://coordinator.example:8443"
name = "builder-01"
data_dir = "/var/lib/kiln-agent"
role = "worker"
concurrency = 1
allow_network = false
default_timeout = 14400
executables = ["dpkg-buildpackage", "sbuild", "autopkgtest", "lintian"]
[image_cache]
max_images = 10
min_free_disk = "10GiB"
[backends]
enabled = ["unshare", "incus-lxc", "incus-vm", "qemu"]
"#;
        let c: AgentConfig = toml::from_str(text).expect("the DESIGN §8 example parses");
        c.validate().expect("and is valid");
        assert_eq!(c.image_cache.min_free_disk, 10 << 30);
        assert!(toml::from_str::<AgentConfig>("coordinater = \"x\"").is_err());
        assert!(toml::from_str::<AgentConfig>("[image_cache]\nmax_imgs = 3").is_err());
        let bad = AgentConfig { coordinator: "ftp://x".into(), ..AgentConfig::default() };
        assert!(bad.validate().is_err());
        let bad = AgentConfig {
            coordinator: "http://x".into(),
            backends: BackendsConfig { enabled: vec!["docker".into()] },
            ..AgentConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn an_unusable_ca_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let not_pem = dir.path().join("lab-ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").expect("write");
        for path in [not_pem, dir.path().join("missing.pem")] {
            let c = AgentConfig {
                coordinator: "https://kiln.example".into(),
                ca_certificate: Some(path.clone()),
                ..AgentConfig::default()
            };
            let err = c.validate().expect_err("refused").to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }
}
