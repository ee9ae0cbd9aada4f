//! The file store: artifact file contents, content-addressed by SHA-256
//! under `<data-dir>/files/ab/abcdef…`. An upload streams into a temporary
//! file while hashing, and only a file whose size and hash match what the
//! artifact declared is renamed into place.

use crate::store::sqlite::EMPTY_SHA256;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than the declared {declared} bytes")]
    TooLarge { declared: u64 },
    #[error("the upload has {received} bytes, the artifact declared {declared}")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("the upload's sha256 is {received}, the artifact declared {declared}")]
    HashMismatch { declared: String, received: String },
    #[error("the upload was interrupted: {0}")]
    Body(String),
    #[error("failed to store the upload: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("files");
        std::fs::create_dir_all(root.join("tmp"))?;
        // Uploads interrupted by a crash left partial files: never complete.
        for entry in std::fs::read_dir(root.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let store = FileStore { root };
        // An empty declared file is complete at once; make sure it can be read.
        let empty = store.blob_path(EMPTY_SHA256);
        if !empty.exists() {
            std::fs::create_dir_all(empty.parent().unwrap_or(&store.root))?;
            std::fs::write(&empty, b"")?;
        }
        Ok(store)
    }

    /// Where the bytes with this hash live.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(sha256)
    }

    /// Store `bytes` made by the coordinator itself (server tasks): written
    /// to a temporary file, synced, renamed into place. Returns the hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<String> {
        use std::io::Write;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let dest = self.blob_path(&sha256);
        if dest.exists() {
            return Ok(sha256);
        }
        let tmp = tempfile_path(&self.root.join("tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(&tmp, &dest).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(sha256)
    }

    /// Remove the bytes with this hash once no artifact uses them; gone
    /// already is fine. The empty file stays.
    pub fn remove_blob(&self, sha256: &str) -> std::io::Result<()> {
        if sha256 == EMPTY_SHA256 {
            return Ok(());
        }
        match std::fs::remove_file(self.blob_path(sha256)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Stream `body` in, checking it against the declared size and hash.
    pub async fn receive<S, E>(&self, mut body: S, size: u64, sha256: &str) -> Result<(), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = tempfile_path(&self.root.join("tmp"));
        let result = self.receive_into(&tmp, &mut body, size, sha256).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn receive_into<S, E>(&self, tmp: &Path, body: &mut S, size: u64, sha256: &str) -> Result<(), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(tmp).await?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
            received += chunk.len() as u64;
            if received > size {
                return Err(UploadError::TooLarge { declared: size });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if received != size {
            return Err(UploadError::SizeMismatch { declared: size, received });
        }
        let digest = hex::encode(hasher.finalize());
        if digest != sha256 {
            return Err(UploadError::HashMismatch { declared: sha256.to_owned(), received: digest });
        }
        file.sync_all().await?;
        drop(file);
        let dest = self.blob_path(sha256);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(tmp, &dest).await?;
        Ok(())
    }
}

fn tempfile_path(dir: &Path) -> PathBuf {
    use rand::Rng;
    dir.join(format!("upload-{:016x}", rand::thread_rng().gen::<u64>()))
}
