//! `kiln-coordinator serve`.

use crate::cli::ServeArgs;
use crate::config::CoordinatorConfig;
use crate::server;
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
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let addr = listener.local_addr().context("failed to read the bound address")?;
    let state = server::open_state(config)?;
    tracing::info!(%addr, "kiln-coordinator listening");
    // Scripts and tests read the bound address (port 0 picks one) from here.
    let mut out = std::io::stdout();
    writeln!(out, "kiln-coordinator listening on http://{addr}")?;
    out.flush()?;
    // Listening and the store open: systemd (Type=notify) may start what
    // comes after the coordinator.
    kiln_shared::systemd::notify_ready(&format!("listening on http://{addr}"));
    tokio::spawn(kiln_shared::systemd::feed_watchdog());
    server::run(listener, state, shutdown_signal()).await
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
