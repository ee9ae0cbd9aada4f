//! Where the server URL, token and CA certificate come from: the command line (which clap
//! already merges with `KILN_SERVER`/`KILN_TOKEN`), else the config file
//! `~/.config/kiln/config.toml`.

use crate::cli::GlobalArgs;
use crate::error::CliError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `config.toml`; unknown keys are refused so that a typo is not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<String>,
    pub token: Option<String>,
    pub ca_certificate: Option<PathBuf>,
}

/// What a command needs to talk to the coordinator.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
    pub ca_certificate: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/kiln/config.toml`, else `$HOME/.config/kiln/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("kiln").join("config.toml"))
}

impl FileConfig {
    /// Parse `path`; `None` when it does not exist and was not asked for.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(FileConfig::default()),
            Err(e) => return Err(CliError::Config(format!("failed to read the config file {}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| CliError::Config(format!("invalid config file {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }
}

/// Flags and environment win over the file, key by key.
pub fn resolve(global: &GlobalArgs) -> Result<Settings, CliError> {
    let (path, explicit) = match &global.config {
        Some(path) => (Some(path.clone()), true),
        None => (default_path(), false),
    };
    let file = match &path {
        Some(path) => FileConfig::load(path, explicit)?,
        None => FileConfig::default(),
    };
    let server = global.server.clone().filter(|s| !s.is_empty()).or(file.server).ok_or_else(|| {
        CliError::Config(
            "no coordinator given: pass --server URL, set KILN_SERVER, or put server = \"URL\" in \
             ~/.config/kiln/config.toml"
                .to_owned(),
        )
    })?;
    let token = global.token.clone().filter(|t| !t.is_empty()).or(file.token);
    let ca_certificate = global.ca_certificate.clone().filter(|p| !p.as_os_str().is_empty()).or(file.ca_certificate);
    Ok(Settings { server, token, ca_certificate })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: Option<&str>, config: Option<&Path>) -> GlobalArgs {
        GlobalArgs {
            server: server.map(str::to_owned),
            token: None,
            ca_certificate: None,
            config: config.map(Path::to_path_buf),
            json: false,
            quiet: false,
        }
    }

    #[test]
    fn file_fills_in_what_flags_leave_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "server = \"http://file:1\"\ntoken = \"t0k\"\nca_certificate = \"/lab-ca.pem\"\n")
            .expect("write");
        let s = resolve(&args(None, Some(&path))).expect("resolves");
        assert_eq!((s.server.as_str(), s.token.as_deref()), ("http://file:1", Some("t0k")));
        assert_eq!(s.ca_certificate.as_deref(), Some(Path::new("/lab-ca.pem")));
        let s = resolve(&args(Some("http://flag:2"), Some(&path))).expect("resolves");
        assert_eq!((s.server.as_str(), s.token.as_deref()), ("http://flag:2", Some("t0k")));
    }

    #[test]
    fn bad_files_are_config_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "sever = \"http://typo\"\n").expect("write");
        let err = resolve(&args(None, Some(&path))).expect_err("unknown key");
        assert!(err.to_string().contains("sever"), "{err}");
        assert_eq!(err.exit_code(), 78);
        let missing = dir.path().join("missing.toml");
        assert!(resolve(&args(Some("http://x"), Some(&missing))).is_err(), "an explicit file must exist");
    }
}
