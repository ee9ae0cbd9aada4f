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
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("kiln.sqlite3");
    SqliteStore::open(&path).with_context(|| format!("failed to open the store {}", path.display()))
}
