//! `expire_artifacts`: delete artifacts older than their category's
//! retention, never one that unfinished work still names, and remove the
//! files no remaining artifact uses.
//!
//! `task_data`: `{retention: {"<category>" | "*": <max age in seconds>},
//! dry_run?}`. A category with no rule (and no `*`) is kept.

use super::{Outcome, ServerTaskError};
use crate::files::FileStore;
use crate::store::workflow::ArtifactAge;
use crate::store::Store;
use chrono::{DateTime, Utc};
use kiln_shared::work::WorkRequest;
use kiln_shared::WorkResult;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

/// At most this many ids are listed in `output_data.expired`.
const LISTED: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireData {
    pub retention: BTreeMap<String, u64>,
    #[serde(default)]
    pub dry_run: bool,
}

impl ExpireData {
    pub fn check(&self) -> Result<(), String> {
        if self.retention.is_empty() {
            return Err("task_data.retention must name at least one category (or \"*\")".into());
        }
        if self.retention.keys().any(|k| k.trim().is_empty()) {
            return Err("task_data.retention has an empty category".into());
        }
        Ok(())
    }

    fn max_age(&self, category: &str) -> Option<u64> {
        self.retention.get(category).or_else(|| self.retention.get("*")).copied()
    }
}

/// The artifacts to delete at `now`.
pub fn expired(candidates: &[ArtifactAge], rules: &ExpireData, in_use: &HashSet<i64>, now: DateTime<Utc>) -> Vec<i64> {
    candidates
        .iter()
        .filter(|a| !in_use.contains(&a.id))
        .filter(|a| {
            rules.max_age(&a.category).is_some_and(|max| {
                let age = now.signed_duration_since(a.created_at).num_milliseconds();
                age > i64::try_from(max).unwrap_or(i64::MAX).saturating_mul(1000)
            })
        })
        .map(|a| a.id)
        .collect()
}

pub fn run(store: &dyn Store, files: &FileStore, task: &WorkRequest) -> Result<Outcome, ServerTaskError> {
    let rules: ExpireData = super::parse(&task.task_data)?;
    rules.check().map_err(ServerTaskError::invalid)?;
    let now = Utc::now();
    let shortest = rules.retention.values().min().copied().unwrap_or(0);
    let cutoff = now - chrono::Duration::seconds(i64::try_from(shortest).unwrap_or(i64::MAX / 2).min(1 << 40));
    let candidates = store.artifacts_created_before(cutoff)?;
    let in_use: HashSet<i64> = store.artifacts_in_use()?.into_iter().collect();
    let ids = expired(&candidates, &rules, &in_use, now);
    let kept_in_use = candidates.iter().filter(|a| in_use.contains(&a.id)).count();
    let mut removed_files = 0;
    if !rules.dry_run && !ids.is_empty() {
        for hash in store.delete_artifacts(&ids)? {
            files.remove_blob(&hash)?;
            removed_files += 1;
        }
    }
    tracing::info!(expired = ids.len(), kept_in_use, removed_files, dry_run = rules.dry_run, "artifacts expired");
    let mut output = Map::new();
    output.insert("expired_count".into(), json!(ids.len()));
    output.insert("expired".into(), Value::from(ids.iter().take(LISTED).copied().collect::<Vec<_>>()));
    output.insert("kept_in_use".into(), json!(kept_in_use));
    output.insert("removed_files".into(), json!(removed_files));
    output.insert("dry_run".into(), json!(rules.dry_run));
    Ok(Outcome { result: WorkResult::Success, output_data: output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(id: i64, category: &str, days: i64, now: DateTime<Utc>) -> ArtifactAge {
        ArtifactAge { id, category: category.into(), created_at: now - chrono::Duration::days(days) }
    }

    #[test]
    fn expires_by_category_with_a_default_and_spares_what_is_in_use() {
        let now = Utc::now();
        let day = 86_400;
        let rules = ExpireData {
            retention: BTreeMap::from([("kiln:log".to_owned(), 7 * day), ("*".to_owned(), 30 * day)]),
            dry_run: false,
        };
        let all = [
            age(1, "kiln:log", 8, now),
            age(2, "kiln:log", 6, now),
            age(3, "kiln:system-tarball", 31, now),
            age(4, "kiln:system-tarball", 29, now),
            age(5, "kiln:log", 100, now),
        ];
        assert_eq!(expired(&all, &rules, &HashSet::from([5]), now), vec![1, 3]);
        let only_logs = ExpireData { retention: BTreeMap::from([("kiln:log".to_owned(), 0)]), dry_run: true };
        assert_eq!(expired(&all, &only_logs, &HashSet::new(), now), vec![1, 2, 5], "other categories are kept");
        assert!(ExpireData { retention: BTreeMap::new(), dry_run: false }.check().is_err());
    }
}
