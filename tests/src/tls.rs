//! A throwaway certificate authority made with the real `openssl` command,
//! for testing the coordinator's HTTPS as a lab with its own CA runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA (its certificate and key) in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// A server certificate and its private key, issued by a [`TestCa`].
pub struct ServerFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Run `openssl` with `command` split at spaces (no argument here has one).
fn openssl(command: &str, cwd: &Path) {
    let args: Vec<&str> = command.split_whitespace().collect();
    let out = Command::new("openssl").args(&args).current_dir(cwd).output().expect("run openssl");
    assert!(out.status.success(), "openssl {command} failed: {}", String::from_utf8_lossy(&out.stderr));
}

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

impl TestCa {
    /// A new CA called `name` (no spaces; EC P-256, valid for two days).
    pub fn new(name: &str) -> Self {
        assert!(!name.contains(' '), "CA names here have no spaces");
        let dir = tempfile::Builder::new().prefix("kiln-test-ca-").tempdir().expect("CA dir");
        openssl(
            &format!(
                "req -x509 {EC_KEY} -keyout ca.key -out ca.pem -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
            ),
            dir.path(),
        );
        TestCa { certificate: dir.path().join("ca.pem"), key: dir.path().join("ca.key"), dir }
    }

    /// A server certificate for 127.0.0.1 and localhost: `name.pem` and
    /// `name.key` in the CA's directory.
    pub fn issue(&self, name: &str) -> ServerFiles {
        let dir = self.dir.path();
        std::fs::write(
            dir.join(format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        openssl(&format!("req {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN=localhost"), dir);
        openssl(
            &format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 \
                 -extfile {name}.ext"
            ),
            dir,
        );
        ServerFiles { certificate: dir.join(format!("{name}.pem")), private_key: dir.join(format!("{name}.key")) }
    }
}
