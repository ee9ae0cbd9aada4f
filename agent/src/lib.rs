//! kiln-agent: the heavy part of Kiln. It advertises its host, keeps a cache
//! of environment images, runs each task isolated under its own supervisor
//! process (a *shim*), streams logs and uploads results.

pub mod backends;
pub mod cgroup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod debian;
pub mod fingerprint;
pub mod image_cache;
mod probe;
pub mod sandbox;
pub mod session;
pub mod signing;
pub mod supervisor;

use std::sync::Arc;

/// Register, open the image cache, probe the host and work until stopped.
pub async fn run(config: config::AgentConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(warning) = config.cleartext_warning() {
        tracing::warn!("{warning}");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create the data directory {}", config.data_dir.display()))?;
    let token = session::load_or_create_token(&config.data_dir)
        .with_context(|| format!("failed to read or create the token in {}", config.data_dir.display()))?;
    let client = session::register(&config, &token).await.context("failed to register with the coordinator")?;
    let exe = std::env::current_exe().context("failed to find this executable")?;
    let stores = backends::image_stores(&config, &exe);
    let cache = image_cache::ImageCache::open_with_stores(
        &config.data_dir.join("cache"),
        &config.image_cache,
        sandbox::ID_MAP_BASE,
        stores,
    )
    .context("failed to open the image cache")?;
    if let Err(e) = cache.reconcile_stores().await {
        tracing::warn!(error = %e, "failed to reconcile the image stores with the cache");
    }
    let metadata = daemon::probe(&config, &exe, fingerprint::ProbeDepth::Full).await;
    tracing::info!(
        unshare = ?metadata.get("executor:unshare:available"),
        reason = ?metadata.get("executor:unshare:reason"),
        "host probed"
    );
    let journal = supervisor::journal::Journal::open(&config.data_dir).context("failed to open the journal")?;
    let mut ctx = daemon::Context::new(config, client, cache, journal, exe, metadata);
    if ctx.disk_quota {
        let keep = ctx.config.concurrency.min(4) as usize;
        match daemon::LayerPool::new(&ctx.config.data_dir, ctx.config.limits.disk, keep) {
            Ok(pool) => ctx.layers = Some(Arc::new(pool)),
            Err(e) => tracing::warn!(error = %e, "no pool of writable layers; tasks format their own"),
        }
    }
    let ctx = Arc::new(ctx);
    // Registered, cache open, host probed: systemd (Type=notify) may count
    // the agent as started.
    kiln_shared::systemd::notify_ready("registered; taking work");
    tokio::spawn(kiln_shared::systemd::feed_watchdog());
    tokio::select! {
        r = daemon::run(ctx) => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("stopping; running tasks keep running under their shims");
            Ok(())
        }
    }
}
