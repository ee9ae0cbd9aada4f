//! `kiln-coordinator serve`.

use crate::cli::ServeArgs;
use crate::config::CoordinatorConfig;
use crate::server;
use crate::tls::TlsListener;
use anyhow::Context;
use kiln_shared::size::parse_size;
use std::io::Write;

pub async fn run(mut config: CoordinatorConfig, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(cap) = &args.log_cap {
        config.log_cap = parse_size(cap).map_err(anyhow::Error::msg).context("--log-cap")?;
    }
    if let Some(secs) = args.lost_assignment_after {
        config.lost_assignment_after = secs;
    }
    if let Some(grace) = args.heartbeat_grace {
        config.heartbeat_grace = grace;
    }
    if let Some(max) = &args.max_json_body {
        config.max_json_body = parse_size(max).map_err(anyhow::Error::msg).context("--max-json-body")?;
    }
    if args.tls_certificate.is_some() || args.tls_private_key.is_some() {
        config.tls_certificate = args.tls_certificate.or(config.tls_certificate);
        config.tls_private_key = args.tls_private_key.or(config.tls_private_key);
    }
    config.validate()?;
    // Load the certificate before binding: a bad file is a clear start error.
    let tls = match config.tls_files()? {
        Some(files) => {
            let server_config = files.load()?;
            Some((files, server_config))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let addr = listener.local_addr().context("failed to read the bound address")?;
    let state = server::open_state(config)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "kiln-coordinator listening");
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "{CLEARTEXT_WARNING}");
    }
    // Scripts and tests read the bound address (port 0 picks one) from here.
    let mut out = std::io::stdout();
    writeln!(out, "kiln-coordinator listening on {scheme}://{addr}")?;
    out.flush()?;
    // Listening and the store open: systemd (Type=notify) may start what
    // comes after the coordinator.
    kiln_shared::systemd::notify_ready(&format!("listening on {scheme}://{addr}"));
    tokio::spawn(kiln_shared::systemd::feed_watchdog());
    // A signal starts a graceful shutdown, but long-polls (`next`, log
    // follows) may hold it for a minute: after SHUTDOWN_GRACE the process
    // stops anyway (everything is durable in the store), so that
    // `systemctl stop` and package upgrades are quick.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(true);
    };
    let grace_over = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let serving = async move {
        match tls {
            Some((files, server_config)) => {
                let listener = TlsListener::new(listener, files, server_config).context("failed to serve TLS")?;
                server::run(listener, state, signal).await
            }
            None => {
                tokio::spawn(ignore_hangups());
                server::run(listener, state, signal).await
            }
        }
    };
    tokio::select! {
        result = serving => result,
        () = grace_over => {
            tracing::info!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period: stopping anyway");
            Ok(())
        }
    }
}

/// Said when the API is reachable from other hosts without TLS.
pub const CLEARTEXT_WARNING: &str = "listening beyond loopback without TLS: tokens and task data travel unencrypted; \
     set tls_certificate and tls_private_key (docs/configuration.md#https)";

/// How long open requests may delay the end of a graceful shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Without TLS there is nothing to reload, but `systemctl reload` must not
/// stop the coordinator (SIGHUP's default action).
async fn ignore_hangups() {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: nothing to reload (no TLS certificate); other settings need a restart");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    kiln_shared::systemd::notify_stopping();
    tracing::info!("shutting down");
}
