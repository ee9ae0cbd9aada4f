//! The key store: `<data-dir>/keys/` (mode 0700) holds one GnuPG home per
//! key, named by its fingerprint. gpg runs in batch mode with no passphrase
//! prompt; private keys never leave these homes.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    #[error("failed to prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("failed to run gpg {what}: {message}")]
    Gpg { what: &'static str, message: String },
    #[error("there is no key {0} on this signing host")]
    UnknownKey(String),
}

/// The key store under an agent's data directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GpgError + '_ {
    move |source| GpgError::Io { path: path.to_owned(), source }
}

/// A directory only this user may enter.
fn private_dir(path: &Path) -> Result<(), GpgError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io(path))
}

async fn gpg(home: &Path, what: &'static str, args: &[&str]) -> Result<Vec<u8>, GpgError> {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .output()
        .await
        .map_err(|e| GpgError::Gpg { what, message: e.to_string() })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(GpgError::Gpg { what, message });
    }
    Ok(out.stdout)
}

/// Stop the gpg-agent gpg started for `home`, so none outlives the task.
async fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "gpg-agent"]).output().await;
}

impl KeyStore {
    /// `<data_dir>/keys`, created with mode 0700.
    pub fn open(data_dir: &Path) -> Result<KeyStore, GpgError> {
        let root = data_dir.join("keys");
        private_dir(&root)?;
        Ok(KeyStore { root })
    }

    fn home(&self, fingerprint: &str) -> Result<PathBuf, GpgError> {
        let home = self.root.join(fingerprint);
        let valid = fingerprint.len() >= 40 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid || !home.is_dir() {
            return Err(GpgError::UnknownKey(fingerprint.to_owned()));
        }
        Ok(home)
    }

    /// Generate a signing key; returns its fingerprint and armoured public key.
    pub async fn generate(&self, uid: &str, scratch: &str) -> Result<(String, Vec<u8>), GpgError> {
        let tmp = self.root.join(format!("new-{scratch}"));
        let _ = std::fs::remove_dir_all(&tmp);
        private_dir(&tmp)?;
        let made = async {
            gpg(&tmp, "--quick-generate-key", &["--quick-generate-key", uid, "ed25519", "sign", "never"]).await?;
            let listing = gpg(&tmp, "--list-keys", &["--with-colons", "--list-keys"]).await?;
            let text = String::from_utf8_lossy(&listing);
            let fpr = text
                .lines()
                .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_owned()))
                .ok_or(GpgError::Gpg { what: "--list-keys", message: "no fingerprint listed".into() })?;
            let public = gpg(&tmp, "--export", &["--armor", "--export", &fpr]).await?;
            Ok::<_, GpgError>((fpr, public))
        }
        .await;
        stop_agent(&tmp).await;
        let (fpr, public) = match made {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let home = self.root.join(&fpr);
        std::fs::rename(&tmp, &home).map_err(io(&home))?;
        Ok((fpr, public))
    }

    /// A detached ASCII-armoured signature of `file` by `fingerprint` at `out`.
    pub async fn sign(&self, fingerprint: &str, file: &Path, out: &Path) -> Result<(), GpgError> {
        let home = self.home(fingerprint)?;
        let (file, out) = (file.to_string_lossy(), out.to_string_lossy());
        let args = ["--local-user", fingerprint, "--armor", "--detach-sign", "--output", &out, &file];
        let signed = gpg(&home, "--detach-sign", &args).await;
        stop_agent(&home).await;
        signed.map(|_| ())
    }

    /// Clear-sign `file` in place with `fingerprint` (as debsign does).
    pub async fn clearsign_in_place(&self, fingerprint: &str, file: &Path) -> Result<(), GpgError> {
        let home = self.home(fingerprint)?;
        let out = file.with_extension("kiln-signed");
        let _ = std::fs::remove_file(&out);
        let (input, output) = (file.to_string_lossy(), out.to_string_lossy());
        let args = ["--local-user", fingerprint, "--clearsign", "--output", &output, &input];
        let signed = gpg(&home, "--clearsign", &args).await;
        stop_agent(&home).await;
        signed?;
        std::fs::rename(&out, file).map_err(io(file))
    }
}
