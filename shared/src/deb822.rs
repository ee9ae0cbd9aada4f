//! Reading Debian control files (`.dsc`, `.changes`, `debian/tests/control`):
//! RFC 822-style paragraphs of `Field: value` with indented continuation
//! lines, possibly wrapped in an OpenPGP clear signature. Only what Kiln
//! needs: fields by name (case-insensitive, as Debian policy says) and the
//! file lists of `Checksums-Sha256` and `Files`.

use std::collections::BTreeMap;

/// One paragraph: field names as written, values with continuation lines
/// joined by `\n` (the first line may be empty, as in `Files:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The whitespace-separated words of `name` (`Architecture: any all`).
    pub fn words(&self, name: &str) -> Vec<String> {
        self.get(name).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
    }

    /// Comma-separated items of `name` (`Restrictions` may use either).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split([',', ' ', '\n', '\t']).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deb822Error {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("the {field} field is missing")]
    MissingField { field: String },
    #[error("{field}: line {line:?} is not \"<checksum> <size> <name>\"")]
    BadFileLine { field: String, line: String },
}

/// The text inside an OpenPGP clear signature, or `text` as it is.
pub fn strip_signature(text: &str) -> &str {
    let Some(start) = text.find("-----BEGIN PGP SIGNED MESSAGE-----") else { return text };
    let body = &text[start..];
    // The armour headers end at the first empty line.
    let after_headers = body.find("\n\n").map(|i| &body[i + 2..]).unwrap_or("");
    match after_headers.find("\n-----BEGIN PGP SIGNATURE-----") {
        Some(end) => &after_headers[..end + 1],
        None => after_headers,
    }
}

/// Every paragraph of `text` (comments `#` skipped, a signature unwrapped).
pub fn parse(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    for (n, raw) in strip_signature(text).lines().enumerate() {
        let line = raw.trim_end();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(Deb822Error::Syntax { line: n + 1, message: "continuation line before any field".into() });
            };
            value.push('\n');
            value.push_str(line.trim_start());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Deb822Error::Syntax { line: n + 1, message: format!("{line:?} is not \"Field: value\"") });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(Deb822Error::Syntax { line: n + 1, message: format!("{name:?} is not a field name") });
        }
        current.fields.push((name.to_owned(), value.trim().to_owned()));
    }
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

/// The first paragraph (a `.dsc` or `.changes` has one).
pub fn parse_one(text: &str) -> Result<Paragraph, Deb822Error> {
    parse(text)?.into_iter().next().ok_or(Deb822Error::Syntax { line: 1, message: "no fields at all".into() })
}

/// A file listed in a `.dsc` or `.changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// The files of `Checksums-Sha256` (`<sha256> <size> <name>` per line).
/// File names are plain names: a path would let a control file name
/// anything on the reader's disk.
pub fn sha256_files(p: &Paragraph) -> Result<Vec<ListedFile>, Deb822Error> {
    const FIELD: &str = "Checksums-Sha256";
    let value = p.get(FIELD).ok_or_else(|| Deb822Error::MissingField { field: FIELD.into() })?;
    let mut files = Vec::new();
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || Deb822Error::BadFileLine { field: FIELD.into(), line: line.to_owned() };
        let words: Vec<&str> = line.split_whitespace().collect();
        let (sum, size, name) = match words.as_slice() {
            [sum, size, name] => (*sum, *size, *name),
            // .changes: <sum> <size> <section> <priority> <name> only in Files; be lenient.
            [sum, size, .., name] => (*sum, *size, *name),
            _ => return Err(bad()),
        };
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) || !plain {
            return Err(bad());
        }
        let size = size.parse().map_err(|_| bad())?;
        files.push(ListedFile { name: name.to_owned(), size, sha256: sum.to_ascii_lowercase() });
    }
    Ok(files)
}

/// The fields Kiln keeps of a source package, from its `.dsc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
    /// The `Architecture` field as written (`any all`).
    pub architecture: String,
    pub files: Vec<ListedFile>,
    /// Other fields worth keeping (`Binary`, `Testsuite`, `Format`).
    pub extra: BTreeMap<String, String>,
}

impl SourcePackage {
    pub fn from_dsc(text: &str) -> Result<Self, Deb822Error> {
        let p = parse_one(text)?;
        let need = |f: &str| p.get(f).map(str::to_owned).ok_or_else(|| Deb822Error::MissingField { field: f.into() });
        let extra = ["Binary", "Testsuite", "Format"]
            .iter()
            .filter_map(|f| p.get(f).map(|v| (f.to_ascii_lowercase(), v.replace('\n', " "))))
            .collect();
        Ok(SourcePackage {
            name: need("Source")?,
            version: need("Version")?,
            architecture: need("Architecture")?,
            files: sha256_files(&p)?,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSC: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nFormat: 3.0 (quilt)\nSource: hello\n\
        Binary: hello\nArchitecture: any\nVersion: 2.10-3\nChecksums-Sha256:\n \
        31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b 725946 hello_2.10.orig.tar.gz\n \
        AAAAAA137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b 12688 hello_2.10-3.debian.tar.xz\n\
        Files:\n 6cd0ffea3884a4e79330338dcc2987d6 725946 hello_2.10.orig.tar.gz\n\n\
        -----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn reads_a_signed_dsc() {
        let src = SourcePackage::from_dsc(DSC).expect("parse");
        assert_eq!((src.name.as_str(), src.version.as_str(), src.architecture.as_str()), ("hello", "2.10-3", "any"));
        assert_eq!(src.files.len(), 2);
        assert_eq!(src.files[1].name, "hello_2.10-3.debian.tar.xz");
        assert_eq!(src.files[1].size, 12688);
        assert!(src.files[1].sha256.starts_with("aaaaaa"), "checksums are lower-cased");
        assert_eq!(src.extra.get("binary").map(String::as_str), Some("hello"));
    }

    #[test]
    fn refuses_paths_and_malformed_lines() {
        let evil = "Source: x\nVersion: 1\nArchitecture: all\nChecksums-Sha256:\n \
                    31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b 1 ../../etc/passwd\n";
        assert!(matches!(SourcePackage::from_dsc(evil), Err(Deb822Error::BadFileLine { .. })));
        let short = "Source: x\nVersion: 1\nArchitecture: all\nChecksums-Sha256:\n abc 1 x.tar\n";
        assert!(matches!(SourcePackage::from_dsc(short), Err(Deb822Error::BadFileLine { .. })));
        let missing = "Source: x\nArchitecture: all\n";
        assert_eq!(SourcePackage::from_dsc(missing).err(), Some(Deb822Error::MissingField { field: "Version".into() }));
        assert!(matches!(parse("no colon here"), Err(Deb822Error::Syntax { line: 1, .. })));
    }

    #[test]
    fn reads_several_paragraphs_and_lists() {
        let control = "# comment\nTests: a b\nRestrictions: needs-root,\n isolation-container\n\n\
                       Test-Command: true\nRestrictions: allow-stderr\n";
        let ps = parse(control).expect("parse");
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].list("Restrictions"), ["needs-root", "isolation-container"]);
        assert_eq!(ps[0].words("tests"), ["a", "b"]);
        assert_eq!(ps[1].get("test-command"), Some("true"));
    }
}
