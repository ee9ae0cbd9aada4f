//! `kiln artifact import-dsc FILE.dsc`: upload a Debian source package as a
//! `kiln:source-package` artifact. Every file the .dsc lists must sit beside
//! it with the size and sha256 the .dsc gives, checked before anything is
//! sent, so a half-copied or tampered package never reaches the farm.

use super::upload::{hash_file, send, Files};
use super::Ctx;
use crate::error::CliError;
use crate::output;
use indicatif::ProgressBar;
use kiln_shared::deb822::SourcePackage;
use kiln_shared::exit;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub async fn run(ctx: &Ctx, dsc: &Path) -> Result<u8, CliError> {
    let (source, files) = check(dsc)?;
    let data = json!({
        "name": source.name,
        "version": source.version,
        "architecture": source.architecture,
        "dsc": files.keys().find(|n| n.ends_with(".dsc")),
        "binary": source.extra.get("binary"),
        "testsuite": source.extra.get("testsuite"),
        "format": source.extra.get("format"),
    });
    let data = data.as_object().cloned().unwrap_or_default();
    let artifact = send(ctx, "kiln:source-package".into(), data, None, &files).await?;
    if ctx.json {
        output::json(&artifact)?;
    } else {
        output::line(&format!(
            "artifact {} (kiln:source-package): {} {} ({} files)",
            artifact.id,
            source.name,
            source.version,
            artifact.files.len()
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// Read the .dsc and check the files it lists; the files to upload.
fn check(dsc: &Path) -> Result<(SourcePackage, Files), CliError> {
    let text = std::fs::read(dsc).map_err(|source| CliError::ReadFile { path: dsc.to_owned(), source })?;
    let text = String::from_utf8_lossy(&text);
    let source = SourcePackage::from_dsc(&text)
        .map_err(|e| CliError::BadInput(format!("{} is not a usable .dsc: {e}", dsc.display())))?;
    let dir = dsc.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dsc_name = dsc
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::usage(format!("{}: file names must be UTF-8", dsc.display())))?;
    let dsc_size = std::fs::metadata(dsc).map_err(|source| CliError::ReadFile { path: dsc.to_owned(), source })?.len();
    let mut files = BTreeMap::from([(dsc_name.to_owned(), (dsc.to_owned(), dsc_size))]);
    if source.files.is_empty() {
        return Err(CliError::BadInput(format!("{} lists no files in Checksums-Sha256", dsc.display())));
    }
    for listed in &source.files {
        let path = dir.join(&listed.name);
        let (size, sha256) = hash_file(&path, &ProgressBar::hidden())?;
        if size != listed.size || sha256 != listed.sha256 {
            return Err(CliError::BadInput(format!(
                "{}: the .dsc says {} bytes with sha256 {}, the file has {size} bytes with sha256 {sha256}",
                path.display(),
                listed.size,
                listed.sha256
            )));
        }
        files.insert(listed.name.clone(), (path, size));
    }
    Ok((source, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write_package(dir: &Path, tarball: &[u8], declared: &[u8]) -> PathBuf {
        use sha2::Digest;
        std::fs::write(dir.join("p_1.0.tar.xz"), tarball).expect("write");
        let sum = hex::encode(sha2::Sha256::digest(declared));
        let dsc = format!(
            "Format: 3.0 (native)\nSource: p\nArchitecture: any all\nVersion: 1.0\nChecksums-Sha256:\n {sum} {} p_1.0.tar.xz\n",
            declared.len()
        );
        let path = dir.join("p_1.0.dsc");
        std::fs::write(&path, dsc).expect("write");
        path
    }

    #[test]
    fn takes_the_dsc_and_its_files_when_they_match() {
        let dir = tempfile::tempdir().expect("tmp");
        let dsc = write_package(dir.path(), b"tarball", b"tarball");
        let (source, files) = check(&dsc).expect("valid");
        assert_eq!((source.name.as_str(), source.architecture.as_str()), ("p", "any all"));
        assert_eq!(files.keys().collect::<Vec<_>>(), ["p_1.0.dsc", "p_1.0.tar.xz"]);
    }

    #[test]
    fn refuses_a_file_that_differs_from_the_dsc_or_is_missing() {
        let dir = tempfile::tempdir().expect("tmp");
        let dsc = write_package(dir.path(), b"tampered", b"tarball");
        let err = check(&dsc).expect_err("mismatch");
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("p_1.0.tar.xz"), "{err}");
        std::fs::remove_file(dir.path().join("p_1.0.tar.xz")).expect("rm");
        assert_eq!(check(&dsc).expect_err("missing").exit_code(), 66);
        std::fs::write(&dsc, "not a dsc").expect("write");
        assert_eq!(check(&dsc).expect_err("garbage").exit_code(), 65);
    }
}
