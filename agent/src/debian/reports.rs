//! Reading what Debian tools report: sbuild's build status, lintian's tags
//! by severity, autopkgtest's summary, a source package's test
//! restrictions, `/etc/os-release`. Pure functions of text.

use kiln_shared::deb822;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lintian's severities, most severe first, with their one-letter codes.
pub const LINTIAN_SEVERITIES: [(&str, char); 8] = [
    ("error", 'E'),
    ("warning", 'W'),
    ("info", 'I'),
    ("pedantic", 'P'),
    ("experimental", 'X'),
    ("overridden", 'O'),
    ("classification", 'C'),
    ("masked", 'M'),
];

/// The last `Status:` line of an sbuild log (`successful`, `attempted`, …).
pub fn sbuild_status(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| l.strip_prefix("Status: ")).map(|s| s.trim().to_owned())
}

/// Tags emitted, counted by severity (every severity present, 0 if none).
pub fn lintian_summary(text: &str) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = LINTIAN_SEVERITIES.iter().map(|(s, _)| ((*s).to_owned(), 0)).collect();
    for line in text.lines() {
        let mut chars = line.chars();
        let (Some(code), Some(':'), Some(' ')) = (chars.next(), chars.next(), chars.next()) else { continue };
        if let Some((name, _)) = LINTIAN_SEVERITIES.iter().find(|(_, c)| *c == code) {
            *counts.entry((*name).to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Does `summary` have a tag at or above `threshold` (`none`: never)?
/// Only the first five severities rank; overridden and the rest never fail.
pub fn lintian_fails(summary: &BTreeMap<String, u64>, threshold: &str) -> bool {
    let ranked = &LINTIAN_SEVERITIES[..5];
    let Some(limit) = ranked.iter().position(|(s, _)| *s == threshold) else { return false };
    ranked[..=limit].iter().any(|(s, _)| summary.get(*s).copied().unwrap_or(0) > 0)
}

/// autopkgtest's summary file: `<test> <STATUS> [details]` per line.
pub fn autopkgtest_results(summary: &str) -> BTreeMap<String, Value> {
    let mut results = BTreeMap::new();
    for line in summary.lines() {
        let mut words = line.split_whitespace();
        let (Some(test), Some(status)) = (words.next(), words.next()) else { continue };
        let details: Vec<&str> = words.collect();
        let mut entry = Map::new();
        entry.insert("status".into(), json!(status));
        if !details.is_empty() {
            entry.insert("details".into(), json!(details.join(" ")));
        }
        results.insert(test.to_owned(), Value::Object(entry));
    }
    results
}

/// The tests of a `debian/tests/control` (absent: none) with their
/// restrictions, their union, and what isolation they need.
pub fn test_restrictions(control: Option<&str>) -> Result<Map<String, Value>, deb822::Deb822Error> {
    let paragraphs = match control {
        Some(text) => deb822::parse(text)?,
        None => Vec::new(),
    };
    let mut tests = Vec::new();
    let mut all = BTreeSet::new();
    for (i, p) in paragraphs.iter().enumerate() {
        let restrictions = p.list("Restrictions");
        all.extend(restrictions.iter().cloned());
        let name = match (p.get("Tests"), p.get("Test-Command")) {
            (Some(names), _) => names.split([',', ' ', '\n']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "),
            (None, Some(_)) => format!("command{}", i + 1),
            (None, None) => continue,
        };
        tests.push(json!({"name": name, "restrictions": restrictions}));
    }
    let needs = if all.contains("isolation-machine") {
        json!("machine")
    } else if all.contains("isolation-container") {
        json!("container")
    } else {
        Value::Null
    };
    let mut out = Map::new();
    out.insert("tests".into(), json!(tests));
    out.insert("restrictions".into(), json!(all));
    out.insert("needs".into(), needs);
    Ok(out)
}

/// A field of `/etc/os-release` (`VERSION_CODENAME=bookworm`).
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lintian_tags_and_applies_the_threshold() {
        let text =
            "E: p: bad-thing\nW: p: meh\nW: p source: other\nI: p: fyi\nN: a note\nplain text\nO: p: overridden\n";
        let s = lintian_summary(text);
        assert_eq!((s["error"], s["warning"], s["info"], s["overridden"], s["pedantic"]), (1, 2, 1, 1, 0));
        assert!(lintian_fails(&s, "error") && lintian_fails(&s, "warning"));
        assert!(!lintian_fails(&s, "none"));
        let clean = lintian_summary("W: p: meh\n");
        assert!(!lintian_fails(&clean, "error") && lintian_fails(&clean, "warning"));
        assert!(!lintian_fails(&lintian_summary("O: p: x\n"), "experimental"), "overridden tags never fail");
    }

    #[test]
    fn reads_autopkgtest_summaries() {
        let r =
            autopkgtest_results("command1             PASS\nsmoke FAIL non-zero exit status 1\nslow SKIP needs-root\n");
        assert_eq!(r["command1"], json!({"status": "PASS"}));
        assert_eq!(r["smoke"], json!({"status": "FAIL", "details": "non-zero exit status 1"}));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn finds_restrictions_and_the_isolation_they_need() {
        let control = "Tests: a, b\nRestrictions: needs-root, isolation-container\n\n\
                       Test-Command: true\nRestrictions: allow-stderr\n";
        let out = test_restrictions(Some(control)).expect("parse");
        assert_eq!(out["needs"], json!("container"));
        assert_eq!(out["restrictions"], json!(["allow-stderr", "isolation-container", "needs-root"]));
        assert_eq!(out["tests"][0]["name"], json!("a b"));
        assert_eq!(out["tests"][1], json!({"name": "command2", "restrictions": ["allow-stderr"]}));
        let machine = test_restrictions(Some("Tests: x\nRestrictions: isolation-machine\n")).expect("parse");
        assert_eq!(machine["needs"], json!("machine"));
        let none = test_restrictions(None).expect("none");
        assert_eq!((none["needs"].clone(), none["tests"].clone()), (Value::Null, json!([])));
    }

    #[test]
    fn reads_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_release_field(text, "VERSION_CODENAME").as_deref(), Some("bookworm"));
        assert_eq!(os_release_field(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_field(text, "VERSION_ID"), None);
    }
}
