//! `debsign {key, unsigned}`: like debsign(1), clear-sign a `kiln:upload`'s
//! `.dsc` and `.buildinfo` in place, update their checksums in the
//! `.changes`, then clear-sign the `.changes`; the result is a new
//! `kiln:upload` artifact.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Checksums and size of a file, as a `.changes` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    pub size: usize,
}

impl Sums {
    pub fn of(bytes: &[u8], md5: String, sha1: String) -> Sums {
        Sums { md5, sha1, sha256: hex::encode(Sha256::digest(bytes)), size: bytes.len() }
    }
}

/// Does debsign sign this file of an upload in place?
pub fn signs_in_place(name: &str) -> bool {
    name.ends_with(".dsc") || name.ends_with(".buildinfo")
}

/// `.changes` text with the entries of the files in `new` rewritten:
/// ` <hash> <size> [<section> <priority>] <name>` in `Checksums-Sha1`,
/// `Checksums-Sha256` and `Files` (md5).
pub fn update_changes(text: &str, new: &BTreeMap<String, Sums>) -> String {
    let mut field = "";
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.starts_with(' ') {
            field = line.split(':').next().unwrap_or_default();
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let sums = parts.last().and_then(|name| new.get(*name));
        let hash = match (field, sums) {
            ("Checksums-Sha1", Some(s)) => Some(&s.sha1),
            ("Checksums-Sha256", Some(s)) => Some(&s.sha256),
            ("Files", Some(s)) => Some(&s.md5),
            _ => None,
        };
        match (hash, sums) {
            (Some(hash), Some(s)) if parts.len() >= 3 => {
                let size = s.size.to_string();
                let mut fields = parts.clone();
                fields[0] = hash;
                fields[1] = &size;
                out.push(' ');
                out.push_str(&fields.join(" "));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_the_entries_of_re_signed_files_only() {
        let changes = "Format: 1.8\nSource: hello\nChecksums-Sha1:\n aaa 10 hello_1.0.dsc\n bbb 5 hello_1.0.tar.xz\n\
                       Checksums-Sha256:\n ccc 10 hello_1.0.dsc\n ddd 5 hello_1.0.tar.xz\n\
                       Files:\n eee 10 devel optional hello_1.0.dsc\n fff 5 devel optional hello_1.0.tar.xz\n";
        let sums = Sums { md5: "M".into(), sha1: "S1".into(), sha256: "S256".into(), size: 42 };
        let new = BTreeMap::from([("hello_1.0.dsc".to_owned(), sums)]);
        let out = update_changes(changes, &new);
        assert!(out.contains(" S1 42 hello_1.0.dsc\n") && out.contains(" S256 42 hello_1.0.dsc\n"), "{out}");
        assert!(out.contains(" M 42 devel optional hello_1.0.dsc\n"), "{out}");
        assert!(out.contains(" bbb 5 hello_1.0.tar.xz\n") && out.contains(" fff 5 devel optional"), "{out}");
        assert!(signs_in_place("a_1_amd64.buildinfo") && !signs_in_place("a_1.tar.xz"));
    }
}
