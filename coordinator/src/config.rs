//! `coordinator.toml`: typed, validated once at start, unknown keys refused.
//! Every key can also be given on the command line, which wins.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Bytes of log kept per attempt before the truncation line.
    #[serde(default = "default_log_cap", deserialize_with = "kiln_shared::size::deserialize")]
    pub log_cap: u64,
    /// Seconds a worker may go silent before its running work is lost.
    #[serde(default = "default_heartbeat_grace")]
    pub heartbeat_grace: u64,
    /// Largest JSON body accepted (HTTP 413 beyond).
    #[serde(default = "default_max_json_body", deserialize_with = "kiln_shared::size::deserialize")]
    pub max_json_body: u64,
    /// Largest body of one log append.
    #[serde(default = "default_max_log_body", deserialize_with = "kiln_shared::size::deserialize")]
    pub max_log_body: u64,
    /// A worker seen within this many seconds counts as connected.
    #[serde(default = "default_connected_window")]
    pub connected_window: u64,
    /// Seconds after an assignment after which a heartbeat that does not
    /// list it means the agent never got it (the reply to `next` was lost).
    #[serde(default = "default_lost_assignment_after")]
    pub lost_assignment_after: u64,
    /// Longest long-poll a worker may ask for, in seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait: u64,
    /// Serve `GET /metrics` without a token (for a scraper on a trusted
    /// network); otherwise any valid token may read it.
    #[serde(default)]
    pub metrics_public: bool,
    /// Serve HTTPS with this certificate chain (PEM; with `tls_private_key`).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_private_key: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/kiln-coordinator")
}
fn default_log_cap() -> u64 {
    64 << 20
}
fn default_heartbeat_grace() -> u64 {
    600
}
fn default_max_json_body() -> u64 {
    1 << 20
}
fn default_max_log_body() -> u64 {
    8 << 20
}
fn default_connected_window() -> u64 {
    60
}
fn default_lost_assignment_after() -> u64 {
    60
}
fn default_max_wait() -> u64 {
    60
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            log_cap: default_log_cap(),
            heartbeat_grace: default_heartbeat_grace(),
            max_json_body: default_max_json_body(),
            max_log_body: default_max_log_body(),
            connected_window: default_connected_window(),
            max_wait: default_max_wait(),
            lost_assignment_after: default_lost_assignment_after(),
            metrics_public: false,
            tls_certificate: None,
            tls_private_key: None,
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration in {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl CoordinatorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: CoordinatorConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.log_cap < 1024 {
            return Err(ConfigError::Invalid("log_cap must be at least 1KiB".into()));
        }
        if self.max_json_body < 1024 {
            return Err(ConfigError::Invalid("max_json_body must be at least 1KiB".into()));
        }
        if self.max_log_body < 1024 {
            return Err(ConfigError::Invalid("max_log_body must be at least 1KiB".into()));
        }
        if self.max_wait == 0 || self.connected_window == 0 || self.lost_assignment_after == 0 {
            return Err(ConfigError::Invalid("max_wait and connected_window must be at least 1 second".into()));
        }
        if self.heartbeat_grace == 0 {
            return Err(ConfigError::Invalid("heartbeat_grace must be at least 1 second".into()));
        }
        self.tls_files()?;
        Ok(())
    }

    /// The certificate and key to serve HTTPS with, if any (both or neither).
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        crate::tls::files(self.tls_certificate.as_deref(), self.tls_private_key.as_deref())
            .map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let c = CoordinatorConfig::parse("listen = \"0.0.0.0:9000\"\nlog_cap = \"1MiB\"\nheartbeat_grace = 30\n")
            .expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.log_cap, 1 << 20);
        assert_eq!(c.heartbeat_grace, 30);
        let err = CoordinatorConfig::parse("listne = \"0.0.0.0:9000\"").expect_err("typo refused");
        assert!(err.contains("listne"), "{err}");
        assert!(CoordinatorConfig::parse("log_cap = \"12 parsecs\"").is_err());
        assert!(CoordinatorConfig::parse("heartbeat_grace = 0").is_err());
    }

    #[test]
    fn metrics_are_private_unless_asked() {
        assert!(!CoordinatorConfig::default().metrics_public);
        assert!(CoordinatorConfig::parse("metrics_public = true").expect("valid").metrics_public);
        assert!(CoordinatorConfig::parse("metrics_public = \"yes\"").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        assert_eq!(CoordinatorConfig::default().tls_files().expect("plain HTTP"), None);
        let both = "tls_certificate = \"/etc/kiln/tls/cert.pem\"\ntls_private_key = \"/etc/kiln/tls/key.pem\"\n";
        let files = CoordinatorConfig::parse(both).expect("valid").tls_files().expect("both").expect("some");
        assert_eq!(files.certificate, PathBuf::from("/etc/kiln/tls/cert.pem"));
        let err = CoordinatorConfig::parse("tls_certificate = \"/c.pem\"").expect_err("no key");
        assert!(err.contains("tls_private_key"), "{err}");
        let err = CoordinatorConfig::parse("tls_private_key = \"/k.pem\"").expect_err("no certificate");
        assert!(err.contains("tls_certificate"), "{err}");
    }
}
