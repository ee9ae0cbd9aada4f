//! Incus images of environments: a `kiln:system-tarball` is uploaded as a
//! split image (a small generated metadata tarball plus the rootfs tarball
//! as downloaded, streamed as multipart form data) and aliased
//! `kiln/<artifact id>`; its `kiln.artifact` property names the artifact
//! even if the alias was never made (a crash between the two), so that
//! reconciling finds it.
//!
//! Ref: https://linuxcontainers.org/incus/docs/main/reference/image_format/

use super::client::{reply, Body, Client, IncusError};
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::{json, Value};
use std::path::Path;

/// Image property holding the artifact id.
pub const ARTIFACT_PROPERTY: &str = "kiln.artifact";

/// `metadata.yaml` of an image, in a gzipped tarball.
pub fn metadata_tarball(architecture: &str, artifact_id: i64, description: &str) -> std::io::Result<Vec<u8>> {
    let yaml = format!(
        "architecture: {architecture}\ncreation_date: {}\nproperties:\n  description: {}\n  {ARTIFACT_PROPERTY}: \"{artifact_id}\"\n",
        chrono::Utc::now().timestamp(),
        serde_json::to_string(description).map_err(std::io::Error::other)?,
    );
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    header.set_cksum();
    builder.append_data(&mut header, "metadata.yaml", yaml.as_bytes())?;
    builder.into_inner()?.finish()
}

fn part_header(boundary: &str, name: &str, filename: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
}

/// The multipart body (metadata, then the rootfs streamed from disk) and its length.
async fn split_body(boundary: &str, metadata: Vec<u8>, rootfs: &Path) -> Result<(Body, u64), IncusError> {
    let io = |source| IncusError::Io { what: format!("read {}", rootfs.display()), source };
    let file = tokio::fs::File::open(rootfs).await.map_err(io)?;
    let size = file.metadata().await.map_err(io)?.len();
    let head = part_header(boundary, "metadata", "metadata.tar.gz");
    let middle = format!("\r\n{}", part_header(boundary, "rootfs", "rootfs.tar"));
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = (head.len() + metadata.len() + middle.len() + tail.len()) as u64 + size;
    let before =
        stream::iter([Bytes::from(head), Bytes::from(metadata), Bytes::from(middle)].map(Ok::<Bytes, std::io::Error>));
    let after = stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from(tail))]);
    let body =
        before.chain(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)).chain(after).map_ok(Frame::data);
    Ok((BodyExt::boxed(StreamBody::new(body)), length))
}

/// Import `rootfs` (a tarball, any compression Incus reads) for
/// `artifact_id` and alias it; its fingerprint.
pub async fn import(
    client: &Client,
    artifact_id: i64,
    rootfs: &Path,
    architecture: &str,
    description: &str,
) -> Result<String, IncusError> {
    let alias = super::alias(artifact_id);
    // A leftover of an interrupted import: replace it.
    remove(client, artifact_id).await?;
    let metadata = metadata_tarball(architecture, artifact_id, description)
        .map_err(|source| IncusError::Io { what: "build the image metadata".into(), source })?;
    let boundary = format!("kiln-{:016x}", rand::random::<u64>());
    let (body, length) = split_body(&boundary, metadata, rootfs).await?;
    let headers = [
        ("Content-Type", format!("multipart/form-data; boundary={boundary}")),
        ("Content-Length", length.to_string()),
        ("X-Incus-public", "false".to_owned()),
    ];
    let what = format!("import image {alias}");
    let response = client.send(Method::POST, &client.url("/1.0/images"), &headers, body).await?;
    let r = reply(&what, response).await?;
    let op = r.operation.ok_or_else(|| IncusError::Operation { what: what.clone(), message: "no operation".into() })?;
    let result = client.wait(&op, &what, None).await?;
    let fingerprint = result
        .get("fingerprint")
        .and_then(Value::as_str)
        .ok_or_else(|| IncusError::Operation { what: what.clone(), message: format!("no fingerprint in {result}") })?
        .to_owned();
    let body = json!({"name": alias, "target": fingerprint, "description": description});
    client.call(Method::POST, "/1.0/images/aliases", Some(&body)).await?;
    Ok(fingerprint)
}

/// Remove every image of `artifact_id` (by alias or property); gone is fine.
pub async fn remove(client: &Client, artifact_id: i64) -> Result<(), IncusError> {
    for (id, fingerprint) in list(client).await? {
        if id == artifact_id {
            delete(client, &fingerprint).await?;
        }
    }
    Ok(())
}

pub async fn delete(client: &Client, fingerprint: &str) -> Result<(), IncusError> {
    match client.run(Method::DELETE, &format!("/1.0/images/{fingerprint}"), None).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The Kiln images of the project: (artifact id, fingerprint).
pub async fn list(client: &Client) -> Result<Vec<(i64, String)>, IncusError> {
    let images = client.get("/1.0/images?recursion=1").await?;
    Ok(images.as_array().map(|a| a.iter().filter_map(kiln_image).collect()).unwrap_or_default())
}

/// The artifact id an image is for: its `kiln/<id>` alias or property.
fn kiln_image(image: &Value) -> Option<(i64, String)> {
    let fingerprint = image.get("fingerprint")?.as_str()?.to_owned();
    let by_alias = image
        .get("aliases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("name")?.as_str()?.strip_prefix("kiln/")?.parse().ok())
        .next();
    let by_property =
        image.pointer(&format!("/properties/{ARTIFACT_PROPERTY}")).and_then(Value::as_str).and_then(|p| p.parse().ok());
    Some((by_alias.or(by_property)?, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_alias_or_property() {
        let aliased = json!({"fingerprint": "ab", "aliases": [{"name": "kiln/7"}], "properties": {}});
        assert_eq!(kiln_image(&aliased), Some((7, "ab".into())));
        let orphan = json!({"fingerprint": "cd", "aliases": [], "properties": {"kiln.artifact": "9"}});
        assert_eq!(kiln_image(&orphan), Some((9, "cd".into())));
        let foreign = json!({"fingerprint": "ef", "aliases": [{"name": "debian/12"}], "properties": {}});
        assert_eq!(kiln_image(&foreign), None);
    }

    #[test]
    fn the_metadata_tarball_holds_metadata_yaml() {
        let bytes = metadata_tarball("x86_64", 7, "bookworm \"minbase\"").expect("tarball");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut entries = archive.entries().expect("entries");
        let mut entry = entries.next().expect("one entry").expect("entry");
        assert_eq!(entry.path().expect("path").to_string_lossy(), "metadata.yaml");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
        assert!(text.contains("architecture: x86_64") && text.contains("kiln.artifact: \"7\""), "{text}");
        assert!(text.contains(r#"description: "bookworm \"minbase\"""#), "{text}");
    }
}
