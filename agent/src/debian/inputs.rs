//! Getting a Debian task's input artifacts onto the host: every file of the
//! source package and of the binary-package artifacts, streamed into the
//! task's `input/` directory and checked against the sha256 the coordinator
//! recorded. Names are plain file names (no paths), so an artifact cannot
//! place a file outside `input/`.

use crate::image_cache::fetch;
use kiln_shared::artifact::ArtifactState;
use kiln_shared::client::Client;
use kiln_shared::deb822::SourcePackage;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("artifact {id}: {message}")]
    Artifact { id: i64, message: String },
    #[error("failed to fetch artifact {id}: {message}")]
    Fetch { id: i64, message: String },
}

impl InputError {
    pub fn code(&self) -> &'static str {
        match self {
            InputError::Artifact { .. } => "invalid-input",
            InputError::Fetch { .. } => "artifact-download-failed",
        }
    }
}

/// What the inputs turned out to be.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The `.dsc` in `input/`, and what it says.
    pub dsc: Option<(PathBuf, SourcePackage)>,
    /// `.deb`/`.udeb` files in `input/`.
    pub debs: Vec<PathBuf>,
}

fn plain(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next()?;
    (!base.is_empty() && base != "." && base != "..").then_some(base)
}

/// Download every file of artifact `id` (which must be of `category`) into
/// `dir`; the local paths.
pub async fn fetch_artifact(client: &Client, id: i64, category: &str, dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let artifact = client.artifact(id).await.map_err(|e| InputError::Fetch { id, message: e.to_string() })?;
    if artifact.category != category {
        let message = format!("is a {}, not a {category}", artifact.category);
        return Err(InputError::Artifact { id, message });
    }
    if artifact.state != ArtifactState::Complete {
        return Err(InputError::Artifact {
            id,
            message: "is not complete (its files are still being uploaded)".into(),
        });
    }
    let mut paths = Vec::new();
    for file in &artifact.files {
        let Some(name) = plain(&file.path) else {
            return Err(InputError::Artifact {
                id,
                message: format!("has a file with no usable name: {:?}", file.path),
            });
        };
        let to = dir.join(name);
        if to.exists() {
            return Err(InputError::Artifact { id, message: format!("{name} is given twice") });
        }
        let (sha256, size) = fetch::download(client, id, file, &to)
            .await
            .map_err(|e| InputError::Fetch { id, message: e.to_string() })?;
        fetch::verify(id, file, &sha256, size).map_err(|e| InputError::Fetch { id, message: e.to_string() })?;
        paths.push(to);
    }
    Ok(paths)
}

/// Fetch the source package and the binary packages named in `input`.
pub async fn fetch(client: &Client, source: Option<i64>, binaries: &[i64], dir: &Path) -> Result<Inputs, InputError> {
    std::fs::create_dir_all(dir).map_err(|e| InputError::Fetch { id: 0, message: e.to_string() })?;
    let mut inputs = Inputs::default();
    if let Some(id) = source {
        let files = fetch_artifact(client, id, "kiln:source-package", dir).await?;
        let dsc = files.iter().find(|p| p.extension().is_some_and(|e| e == "dsc")).cloned();
        let Some(dsc) = dsc else {
            return Err(InputError::Artifact { id, message: "has no .dsc file".into() });
        };
        let text = std::fs::read_to_string(&dsc).map_err(|e| InputError::Fetch { id, message: e.to_string() })?;
        let parsed = SourcePackage::from_dsc(&text).map_err(|e| InputError::Artifact { id, message: e.to_string() })?;
        for listed in &parsed.files {
            if !dir.join(&listed.name).is_file() {
                let message = format!("lists {} in its .dsc, but the artifact has no such file", listed.name);
                return Err(InputError::Artifact { id, message });
            }
        }
        inputs.dsc = Some((dsc, parsed));
    }
    for &id in binaries {
        let category = client
            .artifact(id)
            .await
            .map(|a| a.category)
            .map_err(|e| InputError::Fetch { id, message: e.to_string() })?;
        // An upload carries .debs as well as the .changes; either will do.
        let category = if category == "kiln:upload" { "kiln:upload" } else { "kiln:binary-packages" };
        let files = fetch_artifact(client, id, category, dir).await?;
        inputs.debs.extend(files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "deb" || e == "udeb")));
    }
    Ok(inputs)
}
