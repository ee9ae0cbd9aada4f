//! One module per subcommand.

pub mod key;
pub mod serve;
pub mod token;
pub mod worker;

use crate::cli::Cli;
use crate::config::CoordinatorConfig;
use crate::store::SqliteStore;
use anyhow::Context;

/// The configuration: file (if any), then command-line overrides.
pub fn load_config(cli: &Cli) -> anyhow::Result<CoordinatorConfig> {
    let mut config = match &cli.config {
        Some(path) => CoordinatorConfig::load(path)?,
        None => CoordinatorConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// Open the store directly (for administrative subcommands).
pub fn open_store(config: &CoordinatorConfig) -> anyhow::Result<SqliteStore> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    let own = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let dir = std::fs::metadata(&config.data_dir).map(|m| m.uid()).ok();
    if let Some(message) = foreign_data_dir(own, dir, &config.data_dir) {
        anyhow::bail!(message);
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("kiln.sqlite3");
    SqliteStore::open(&path).with_context(|| format!("failed to open the store {}", path.display()))
}

/// Root running an administrative command on a data directory that belongs
/// to another user (the packaged service's `kiln-coordinator`) would leave
/// root-owned database files the service can no longer write: refuse, and
/// say how to run it instead.
fn foreign_data_dir(own_uid: Option<u32>, dir_uid: Option<u32>, dir: &std::path::Path) -> Option<String> {
    let (0, Some(owner)) = (own_uid?, dir_uid) else { return None };
    if owner == 0 {
        return None;
    }
    let name = user_name(owner).unwrap_or_else(|| owner.to_string());
    Some(format!(
        "{} belongs to {name}, not root: files this command creates would be root's and the service could not \
         write them; run it as that user: runuser -u {name} -- kiln-coordinator …",
        dir.display()
    ))
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn root_may_not_write_into_a_service_users_data_dir() {
        let dir = Path::new("/var/lib/kiln-coordinator");
        let refused = foreign_data_dir(Some(0), Some(0xfffe), dir).expect("refused");
        assert!(refused.contains("runuser -u") && refused.contains("/var/lib/kiln-coordinator"), "{refused}");
        assert_eq!(foreign_data_dir(Some(0), Some(0), dir), None, "root's own directory");
        assert_eq!(foreign_data_dir(Some(0), None, dir), None, "a directory yet to be created");
        assert_eq!(foreign_data_dir(Some(1000), Some(0xfffe), dir), None, "not root: permissions decide");
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
