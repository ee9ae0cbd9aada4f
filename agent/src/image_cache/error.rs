//! Why getting an image failed, with a stable machine-readable code that the
//! agent reports with an infrastructure `error` (DESIGN §6a).

use super::extract::ExtractError;
use super::index::IndexError;
use kiln_shared::client::ClientError;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to look up image artifact {artifact_id}: {source}")]
    Lookup { artifact_id: i64, source: ClientError },
    #[error("artifact {artifact_id} is a {category}, not a kiln:system-tarball")]
    WrongCategory { artifact_id: i64, category: String },
    #[error("image artifact {artifact_id} is not complete: some files are not uploaded yet")]
    Incomplete { artifact_id: i64 },
    #[error("image artifact {artifact_id} has no single tarball among its files {files:?}")]
    NoTarball { artifact_id: i64, files: Vec<String> },
    #[error("failed to download {file} of image artifact {artifact_id}: {source}")]
    Download { artifact_id: i64, file: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(
        "failed to verify {file} of image artifact {artifact_id}: expected sha256 {expected} \
         ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    ChecksumMismatch {
        artifact_id: i64,
        file: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error("failed to unpack image artifact {artifact_id}: {source}")]
    Extract { artifact_id: i64, source: ExtractError },
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("the image cache in {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("failed to get image artifact {artifact_id}: {reason}")]
    Internal { artifact_id: i64, reason: String },
    #[error("failed to put image artifact {artifact_id} into the {store} image store: {source}")]
    Store { artifact_id: i64, store: String, source: super::stores::StoreError },
    /// The failure of a download another caller started and this one waited for.
    #[error(transparent)]
    Shared(Arc<CacheError>),
}

impl CacheError {
    /// The code reported to the coordinator with the task's `error` result.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::Lookup { source, .. } if source.status().map(|s| s.as_u16()) == Some(404) => "image-not-found",
            CacheError::Lookup { .. } | CacheError::Download { .. } => "image-download-failed",
            CacheError::WrongCategory { .. } => "image-wrong-category",
            CacheError::Incomplete { .. } => "image-incomplete",
            CacheError::NoTarball { .. } => "image-no-tarball",
            CacheError::ChecksumMismatch { .. } => "image-checksum-mismatch",
            CacheError::Extract { source: ExtractError::Unsafe { .. }, .. } => "image-unsafe",
            CacheError::Extract { source: ExtractError::Archive(_), .. } => "image-corrupt",
            CacheError::Extract { source: ExtractError::Io { .. }, .. }
            | CacheError::Io { .. }
            | CacheError::Index(_)
            | CacheError::Locked { .. }
            | CacheError::Internal { .. } => "image-io",
            CacheError::Store { .. } => "image-store-failed",
            CacheError::Shared(inner) => inner.code(),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CacheError::Io { action, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_shared::ErrorBody;

    #[test]
    fn codes_tell_the_failures_apart() {
        let api = |status: u16| ClientError::Api {
            status: reqwest::StatusCode::from_u16(status).expect("valid status"),
            body: ErrorBody { error: "x".into(), message: "x".into() },
        };
        let unsafe_entry = ExtractError::Unsafe { entry: "../x".into(), reason: "`..`".into() };
        let cases: Vec<(CacheError, &str)> = vec![
            (CacheError::Lookup { artifact_id: 1, source: api(404) }, "image-not-found"),
            (CacheError::Lookup { artifact_id: 1, source: api(503) }, "image-download-failed"),
            (CacheError::WrongCategory { artifact_id: 1, category: "x".into() }, "image-wrong-category"),
            (CacheError::Extract { artifact_id: 1, source: unsafe_entry }, "image-unsafe"),
            (
                CacheError::Extract { artifact_id: 1, source: ExtractError::Archive(std::io::Error::other("x")) },
                "image-corrupt",
            ),
            (CacheError::io("read", "/x")(std::io::Error::other("disk")), "image-io"),
            (
                CacheError::Shared(Arc::new(CacheError::ChecksumMismatch {
                    artifact_id: 1,
                    file: "a.tar".into(),
                    expected: "aa".into(),
                    expected_size: 1,
                    actual: "bb".into(),
                    actual_size: 1,
                })),
                "image-checksum-mismatch",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
        let wrong = CacheError::WrongCategory { artifact_id: 7, category: "kiln:system-image".into() };
        assert!(wrong.to_string().contains("kiln:system-image"), "{wrong}");
    }
}
