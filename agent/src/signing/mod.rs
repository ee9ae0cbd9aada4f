//! The signing role (issue 8): an agent started with `role = "signing"`
//! holds private keys and runs only `generate_key`, `sign` and `debsign`.
//! It runs no untrusted code, needs no backend, and talks to its
//! coordinator only over HTTPS (plain HTTP is accepted for loopback only).

pub mod debsign;
mod gpg;
mod tasks;

pub use gpg::{GpgError, KeyStore};
pub use tasks::SigningError;

use kiln_shared::client::Client;
use kiln_shared::work::WorkRequest;
use serde_json::{Map, Value};
use std::path::Path;

/// Run signing task `wr` with the keys under `data_dir`: its `output_data`
/// on success.
pub async fn run(data_dir: &Path, client: &Client, wr: &WorkRequest) -> Result<Map<String, Value>, SigningError> {
    match wr.task_name.as_str() {
        "generate_key" => tasks::generate_key(data_dir, client, wr).await,
        "sign" => tasks::sign(data_dir, client, wr).await,
        "debsign" => tasks::debsign(data_dir, client, wr).await,
        other => Err(SigningError::Invalid(format!("this signing agent does not run {other:?} yet"))),
    }
}

/// Version of each signing task, advertised as `<task>:version` by signing
/// agents only, so the scheduler never gives them to worker agents.
pub const SIGNING_TASKS: &[(&str, u32)] = &[("generate_key", 1), ("sign", 1), ("debsign", 1)];

/// Is `name` a task only a signing agent runs?
pub fn is_signing_task(name: &str) -> bool {
    SIGNING_TASKS.iter().any(|(t, _)| *t == name)
}

/// Why a signing agent refuses its coordinator URL, if it does: keys must
/// not be used on instructions that could have been tampered with on the way.
pub fn transport_problem(coordinator: &str) -> Option<String> {
    let rest = coordinator.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!("a signing agent talks to its coordinator over https:// (plain http:// only to loopback), not {coordinator:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in ["https://kiln.example", "http://127.0.0.1:8080", "http://localhost/", "http://[::1]:9/x"] {
            assert_eq!(transport_problem(ok), None, "{ok}");
        }
        for bad in ["http://kiln.example", "http://10.0.0.1:80", "http://127.0.0.1.evil.example", "http://[::2]/"] {
            assert!(transport_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn knows_its_tasks() {
        assert!(is_signing_task("sign") && is_signing_task("generate_key") && is_signing_task("debsign"));
        assert!(!is_signing_task("command") && !is_signing_task("noop"));
    }
}
