//! The pure decisions of extraction: which compression a stream uses,
//! which entry paths and symlink targets stay inside the destination, and
//! how container ids map to host ids.

use super::ExtractError;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Container ids a shifted image may use: the unshare backend maps container
/// ids `0..65536` onto host ids `id_shift..id_shift + 65536`.
pub const ID_RANGE: u64 = 65_536;

/// The compression of a tarball, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    None,
}

/// Tell the compression from the magic bytes at the start of the stream.
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
        Compression::Xz
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The host id for container id `id`: `None` when it cannot be mapped.
pub fn shift_id(id: u64, id_shift: u32) -> Option<u32> {
    if id_shift > 0 && id >= ID_RANGE {
        return None;
    }
    u32::try_from(id).ok()?.checked_add(id_shift)
}

/// Wrap `reader` in the decoder its magic bytes call for.
pub(super) fn decompressed<'a>(mut reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ExtractError> {
    let mut magic = [0u8; 6];
    let mut n = 0;
    while n < magic.len() {
        match reader.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ExtractError::Archive(e)),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec()).chain(reader);
    Ok(match detect(&magic[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(head)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(head)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(head).map_err(ExtractError::Archive)?),
        Compression::None => Box::new(head),
    })
}

/// A relative path without `.` components, or why the entry's path is refused.
pub(super) fn normalise(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
            Component::ParentDir => return Err("`..` in the path"),
        }
    }
    Ok(out)
}

/// Does the relative symlink `target`, placed at `link` (relative to the
/// destination), resolve lexically to somewhere outside the destination?
pub(super) fn escapes(link: &Path, target: &Path) -> bool {
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            // Absolute targets resolve inside the container's root.
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z']), Compression::None, "truncated xz magic");
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect(b"./\0\0"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn ids_shift_within_the_mapped_range() {
        assert_eq!(shift_id(0, 100_000), Some(100_000));
        assert_eq!(shift_id(65_535, 100_000), Some(165_535));
        assert_eq!(shift_id(65_536, 100_000), None);
        assert_eq!(shift_id(65_536, 0), Some(65_536));
        assert_eq!(shift_id(u64::from(u32::MAX) + 1, 0), None);
        assert_eq!(shift_id(65_535, u32::MAX), None, "no overflow");
    }

    #[test]
    fn paths_are_normalised_and_escapes_spotted() {
        assert_eq!(normalise(Path::new("./a/./b/")), Ok(PathBuf::from("a/b")));
        assert_eq!(normalise(Path::new("./")), Ok(PathBuf::new()));
        assert!(normalise(Path::new("/a")).is_err());
        assert!(normalise(Path::new("a/../b")).is_err());
        assert!(escapes(Path::new("a"), Path::new("..")));
        assert!(!escapes(Path::new("a/b"), Path::new("..")));
        assert!(!escapes(Path::new("a/b"), Path::new("./../x/../y")));
        assert!(escapes(Path::new("a/b"), Path::new("x/../../..")));
        assert!(!escapes(Path::new("a/b"), Path::new("/../../..")), "absolute targets stay in the container");
    }
}
