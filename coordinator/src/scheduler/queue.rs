//! Pending work indexed by requirement class. Picking work for an agent
//! costs O(classes), not O(pending): within a class every request needs the
//! same thing, so only its best entry is ever looked at.

use super::matcher::{matches, AgentView, CompiledRequirements};
use super::requirements::Requirements;
use crate::store::PendingEntry;
use kiln_shared::work::WorkRequestId;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Order within a class: highest priority first, then the oldest (lowest id).
type Key = (Reverse<i64>, WorkRequestId);

#[derive(Debug)]
struct Class {
    req: CompiledRequirements,
    entries: BTreeSet<Key>,
}

/// Where an indexed request sits, and since when it has been pending (as
/// far as this process knows: at start, the rebuild time).
#[derive(Debug)]
struct Slot {
    class: String,
    key: Key,
    since: Instant,
}

/// The in-memory index. The store stays the source of truth: the index is
/// rebuilt from it at start and a stale entry is simply skipped on assignment.
#[derive(Debug, Default)]
pub struct PendingQueue {
    classes: HashMap<String, Class>,
    by_id: HashMap<WorkRequestId, Slot>,
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

    /// Index a pending request (replacing an older entry for the same id,
    /// whose pending-since time it keeps).
    pub fn insert(&mut self, entry: PendingEntry) {
        let since = self.remove_slot(entry.id).map_or_else(Instant::now, |slot| slot.since);
        self.insert_since(entry, since);
    }

    /// Index a pending request that has been pending since `since`.
    pub fn insert_since(&mut self, entry: PendingEntry, since: Instant) {
        self.remove_slot(entry.id);
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
        self.by_id.insert(entry.id, Slot { class: class_key, key, since });
    }

    /// Drop a request from the index (assigned, aborted, ...).
    pub fn remove(&mut self, id: WorkRequestId) -> bool {
        self.remove_slot(id).is_some()
    }

    fn remove_slot(&mut self, id: WorkRequestId) -> Option<Slot> {
        let slot = self.by_id.remove(&id)?;
        if let Some(class) = self.classes.get_mut(&slot.class) {
            class.entries.remove(&slot.key);
            if class.entries.is_empty() {
                self.classes.remove(&slot.class);
            }
        }
        Some(slot)
    }

    /// Each requirement class with the number of requests pending in it.
    pub fn classes(&self) -> impl Iterator<Item = (&Requirements, usize)> + '_ {
        self.classes.values().map(|class| (&class.req.req, class.entries.len()))
    }

    /// The best pending request this agent can take, removed from the index
    /// (handed back whole so a failed assignment can put it back).
    pub fn take_for(&mut self, agent: &AgentView<'_>) -> Option<PendingEntry> {
        self.take_for_timed(agent).map(|(entry, _)| entry)
    }

    /// Like [`PendingQueue::take_for`], with the time it became pending.
    pub fn take_for_timed(&mut self, agent: &AgentView<'_>) -> Option<(PendingEntry, Instant)> {
        let (key, class) = self
            .classes
            .values()
            .filter_map(|class| class.entries.first().map(|key| (*key, class)))
            .filter(|(_, class)| matches(&class.req, agent))
            .min_by_key(|(key, _)| *key)?;
        let entry = PendingEntry { id: key.1, priority: key.0 .0, requirements: class.req.req.clone() };
        let since = self.remove_slot(entry.id).map_or_else(Instant::now, |slot| slot.since);
        Some((entry, since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn pending_since_survives_a_reinsert_and_counts_by_class() {
        let mut q = PendingQueue::default();
        let early = Instant::now() - std::time::Duration::from_secs(60);
        q.insert_since(entry(1, 0, "noop"), early);
        q.insert(entry(1, 5, "noop"));
        q.insert(entry(2, 0, "noop"));
        q.insert(entry(3, 0, "command"));
        let mut counts: Vec<_> = q.classes().map(|(r, n)| (r.task_name.clone(), n)).collect();
        counts.sort();
        assert_eq!(counts, vec![("command".into(), 1), ("noop".into(), 2)]);
        let md = md(&["noop"]);
        let agent = AgentView { role: WorkerRole::Worker, metadata: &md };
        let (taken, since) = q.take_for_timed(&agent).expect("one");
        assert_eq!((taken.id, since), (1, early));
    }
}
