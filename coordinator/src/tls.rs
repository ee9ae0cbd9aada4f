//! HTTPS for the coordinator: the certificate chain and private key from
//! PEM files, and a listener that completes TLS handshakes beside the
//! accept loop (a client that stalls its handshake delays nobody else).
//! SIGHUP reloads the files, so a renewed certificate needs no restart; a
//! reload that fails keeps the certificate in use and says why.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Why the certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("the TLS private key {key} does not go with the certificate {certificate}: {reason}")]
    Mismatch { certificate: PathBuf, key: PathBuf, reason: String },
}

impl TlsFiles {
    /// Read and check both files: a chain of at least one certificate, a
    /// PKCS#8, PKCS#1 or SEC1 key that matches the first certificate.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let cert_error = |reason: String| TlsError::Certificate { path: self.certificate.clone(), reason };
        let chain = CertificateDer::pem_file_iter(&self.certificate)
            .map_err(|e| cert_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(e.to_string()))?;
        if chain.is_empty() {
            return Err(cert_error("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.private_key)
            .map_err(|e| TlsError::PrivateKey { path: self.private_key.clone(), reason: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cert_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Mismatch {
                certificate: self.certificate.clone(),
                key: self.private_key.clone(),
                reason: e.to_string(),
            })?;
        // The HTTP server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts TCP connections and hands the HTTP server those whose TLS
/// handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
    reloading: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serve TLS on `tcp` with the certificate in `files` (already loaded
    /// as `config`, so that a bad file fails the start, not a handshake).
    pub fn new(tcp: TcpListener, files: TlsFiles, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let current = Arc::new(RwLock::new(config));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, Arc::clone(&current), tx));
        let reloading = tokio::spawn(reload_on_hangup(files, current));
        Ok(TlsListener { ready, local, accepting, reloading })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
        self.reloading.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let config = Arc::clone(&current.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn reload_on_hangup(files: TlsFiles, current: Arc<RwLock<Arc<ServerConfig>>>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the TLS certificate is reloaded only by a restart");
        return;
    };
    while hangups.recv().await.is_some() {
        match files.load() {
            Ok(config) => {
                *current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
                tracing::info!(certificate = %files.certificate.display(), "SIGHUP: TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the TLS certificate in use"),
        }
    }
}

/// Both files or neither.
pub fn files(certificate: Option<&Path>, private_key: Option<&Path>) -> Result<Option<TlsFiles>, String> {
    match (certificate, private_key) {
        (Some(c), Some(k)) => Ok(Some(TlsFiles { certificate: c.to_owned(), private_key: k.to_owned() })),
        (None, None) => Ok(None),
        (Some(_), None) => Err("tls_certificate is set but tls_private_key is not: HTTPS needs both".into()),
        (None, Some(_)) => Err("tls_private_key is set but tls_certificate is not: HTTPS needs both".into()),
    }
}
