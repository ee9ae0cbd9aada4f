//! Pending work indexed by requirement class. Picking work for an agent
//! costs O(classes), not O(pending): within a class every request needs the
//! same thing, so only its best entry is ever looked at.

use super::matcher::{matches, AgentView, CompiledRequirements};
use crate::store::PendingEntry;
use kiln_shared::work::WorkRequestId;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// Order within a class: highest priority first, then the oldest (lowest id).
type Key = (Reverse<i64>, WorkRequestId);

#[derive(Debug)]
struct Class {
    req: CompiledRequirements,
    entries: BTreeSet<Key>,
}

/// The in-memory index. The store stays the source of truth: the index is
/// rebuilt from it at start and a stale entry is simply skipped on assignment.
#[derive(Debug, Default)]
pub struct PendingQueue {
    classes: HashMap<String, Class>,
    by_id: HashMap<WorkRequestId, (String, Key)>,
}

impl PendingQueue {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Index a pending request (replacing an older entry for the same id).
    pub fn insert(&mut self, entry: PendingEntry) {
        self.remove(entry.id);
        let class_key = entry.requirements.class_key();
        let key = (Reverse(entry.priority), entry.id);
        let class = match self.classes.entry(class_key.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match CompiledRequirements::compile(entry.requirements) {
                    Ok(req) => v.insert(Class { req, entries: BTreeSet::new() }),
                    // Creation validates regexes; a request that still fails
                    // to compile can match nobody, so it is not indexed.
                    Err(err) => {
                        tracing::warn!(id = entry.id, %err, "unmatchable requirements not indexed");
                        return;
                    }
                }
            }
        };
        class.entries.insert(key);
        self.by_id.insert(entry.id, (class_key, key));
    }

    /// Drop a request from the index (assigned, aborted, ...).
    pub fn remove(&mut self, id: WorkRequestId) -> bool {
        let Some((class_key, key)) = self.by_id.remove(&id) else {
            return false;
        };
        if let Some(class) = self.classes.get_mut(&class_key) {
            class.entries.remove(&key);
            if class.entries.is_empty() {
                self.classes.remove(&class_key);
            }
        }
        true
    }

    /// The best pending request this agent can take, removed from the index
    /// (handed back whole so a failed assignment can put it back).
    pub fn take_for(&mut self, agent: &AgentView<'_>) -> Option<PendingEntry> {
        let (key, class) = self
            .classes
            .values()
            .filter_map(|class| class.entries.first().map(|key| (*key, class)))
            .filter(|(_, class)| matches(&class.req, agent))
            .min_by_key(|(key, _)| *key)?;
        let entry = PendingEntry { id: key.1, priority: key.0 .0, requirements: class.req.req.clone() };
        self.remove(entry.id);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::requirements::Requirements;
    use kiln_shared::WorkerRole;
    use serde_json::{json, Map, Value};

    fn entry(id: i64, priority: i64, task: &str) -> PendingEntry {
        PendingEntry { id, priority, requirements: Requirements::new(WorkerRole::Worker, task, 1) }
    }

    fn md(tasks: &[&str]) -> Map<String, Value> {
        tasks.iter().map(|t| (format!("{t}:version"), json!(1))).collect()
    }

    #[test]
    fn priority_then_age_across_classes() {
        let mut q = PendingQueue::default();
        q.insert(entry(5, 0, "noop"));
        q.insert(entry(3, 0, "command"));
        q.insert(entry(9, 10, "command"));
        q.insert(entry(4, 0, "noop"));
        let md = md(&["noop", "command"]);
        let agent = AgentView { role: WorkerRole::Worker, metadata: &md };
        let order: Vec<_> = std::iter::from_fn(|| q.take_for(&agent).map(|e| e.id)).collect();
        assert_eq!(order, vec![9, 3, 4, 5]);
        assert!(q.is_empty());
        assert_eq!(q.class_count(), 0, "empty classes are dropped");
    }

    #[test]
    fn unmatched_backlog_is_skipped_by_class() {
        let mut q = PendingQueue::default();
        for id in 1..=1000 {
            q.insert(entry(id, 100, "sbuild"));
        }
        q.insert(entry(2000, 0, "noop"));
        assert_eq!(q.class_count(), 2);
        let md = md(&["noop"]);
        let agent = AgentView { role: WorkerRole::Worker, metadata: &md };
        assert_eq!(q.take_for(&agent).map(|e| e.id), Some(2000));
        assert!(q.take_for(&agent).is_none());
        assert_eq!(q.len(), 1000);
    }

    #[test]
    fn reinsert_and_remove_keep_the_index_consistent() {
        let mut q = PendingQueue::default();
        q.insert(entry(1, 0, "noop"));
        q.insert(entry(1, 5, "noop"));
        assert_eq!(q.len(), 1);
        assert!(q.remove(1));
        assert!(!q.remove(1));
        assert_eq!(q.class_count(), 0);
    }
}
