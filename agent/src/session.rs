//! The agent's identity towards the coordinator: its 256-bit token, kept in
//! `<data-dir>/token` (0600, written atomically), and registration.

use crate::config::{AgentConfig, Role};
use kiln_shared::client::{Client, ClientError};
use kiln_shared::worker::Registration;
use kiln_shared::WorkerRole;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The stored token, or a new one saved first.
pub fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().len() == 64 => return Ok(token.trim().to_owned()),
        Ok(_) => return Err(std::io::Error::other(format!("{} is not a Kiln agent token", path.display()))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let tmp = data_dir.join(".token.tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(token)
}

/// Register (idempotent: the same name and token come back as the same
/// worker). Retries while the coordinator is unreachable, saying so.
pub async fn register(config: &AgentConfig, token: &str) -> Result<Client, ClientError> {
    let ca = config.ca_certificate.as_deref();
    let anonymous = Client::with_ca_certificate(&config.coordinator, None, ca)?;
    let reg = Registration {
        name: config.worker_name(),
        token: token.to_owned(),
        role: match config.role {
            Role::Worker => WorkerRole::Worker,
            Role::Signing => WorkerRole::Signing,
        },
        enrollment_token: config.enrollment_token.clone(),
    };
    let mut delay = Duration::from_secs(1);
    loop {
        match anonymous.register(&reg).await {
            Ok(worker) => {
                if worker.enabled {
                    tracing::info!(worker = %worker.name, "registered and enabled");
                } else {
                    tracing::warn!(worker = %worker.name, "registered, but disabled: an admin must enable it");
                }
                return Client::with_ca_certificate(&config.coordinator, Some(token.to_owned()), ca);
            }
            Err(e @ ClientError::Api { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the coordinator to register");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// `d` ± 20 %, so a fleet does not retry in lockstep.
pub fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + 0.4 * (rand::thread_rng().next_u32() as f64 / u32::MAX as f64);
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = load_or_create_token(dir.path()).expect("create");
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(dir.path().join("token")).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).expect("load"), a);
        std::fs::write(dir.path().join("token"), "garbage").expect("write");
        assert!(load_or_create_token(dir.path()).is_err(), "a damaged token is not silently replaced");
    }
}
