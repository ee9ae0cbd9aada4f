//! The eviction decision (DESIGN §5, §6a), kept pure so it can be tested
//! without a disk: given what the cache holds, what is in use and how much
//! disk is free, which images go, least recently used first.

use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// What the policy needs to know about one cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub artifact_id: i64,
    /// Bytes that evicting the image gives back.
    pub size: u64,
    pub last_used: DateTime<Utc>,
}

/// The artifact ids to evict, in eviction order.
///
/// Evicts least-recently-used first (ties: lowest id first) while more than
/// `max_images` images are cached or fewer than `min_free_disk` bytes are
/// free, counting each eviction as freeing the image's `size`. A pinned
/// image (one in use) is never chosen, even when that leaves the cache over
/// its limits: it is evicted by a later call, once unpinned.
pub fn choose_evictions(
    entries: &[EntryView],
    pinned: &HashSet<i64>,
    max_images: usize,
    free_disk: u64,
    min_free_disk: u64,
) -> Vec<i64> {
    let mut candidates: Vec<&EntryView> = entries.iter().filter(|e| !pinned.contains(&e.artifact_id)).collect();
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.artifact_id.cmp(&b.artifact_id)));
    let mut count = entries.len();
    let mut free = free_disk;
    let mut evicted = Vec::new();
    for entry in candidates {
        if count <= max_images && free >= min_free_disk {
            break;
        }
        evicted.push(entry.artifact_id);
        count -= 1;
        free = free.saturating_add(entry.size);
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const GIB: u64 = 1 << 30;

    /// An entry last used `minute` minutes after a fixed instant.
    fn entry(artifact_id: i64, size: u64, minute: i64) -> EntryView {
        let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().expect("valid date");
        EntryView { artifact_id, size, last_used: base + chrono::Duration::minutes(minute) }
    }

    fn pins(ids: &[i64]) -> HashSet<i64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn nothing_to_do_within_limits() {
        let entries = [entry(1, GIB, 0), entry(2, GIB, 1)];
        assert!(choose_evictions(&entries, &pins(&[]), 2, 100 * GIB, 10 * GIB).is_empty());
        assert!(choose_evictions(&[], &pins(&[]), 0, 0, 10 * GIB).is_empty(), "an empty cache evicts nothing");
    }

    #[test]
    fn over_the_count_evicts_least_recently_used_first() {
        // Listed out of recency order on purpose.
        let entries = [entry(3, GIB, 30), entry(1, GIB, 10), entry(4, GIB, 40), entry(2, GIB, 20)];
        assert_eq!(choose_evictions(&entries, &pins(&[]), 2, 100 * GIB, 0), vec![1, 2]);
        assert_eq!(choose_evictions(&entries, &pins(&[]), 3, 100 * GIB, 0), vec![1]);
        assert_eq!(choose_evictions(&entries, &pins(&[]), 0, 100 * GIB, 0), vec![1, 2, 3, 4]);
    }

    #[test]
    fn pinned_images_are_skipped_never_evicted() {
        let entries = [entry(1, GIB, 10), entry(2, GIB, 20), entry(3, GIB, 30)];
        assert_eq!(choose_evictions(&entries, &pins(&[1]), 2, 100 * GIB, 0), vec![2]);
        assert_eq!(choose_evictions(&entries, &pins(&[1, 2]), 1, 100 * GIB, 0), vec![3]);
        // Everything pinned: stay over the limit rather than evict an image in use.
        assert!(choose_evictions(&entries, &pins(&[1, 2, 3]), 1, 100 * GIB, 0).is_empty());
        // Pins on ids the cache does not hold change nothing.
        assert_eq!(choose_evictions(&entries, &pins(&[99]), 2, 100 * GIB, 0), vec![1]);
    }

    #[test]
    fn disk_pressure_evicts_until_enough_is_free() {
        let entries = [entry(1, 2 * GIB, 10), entry(2, 3 * GIB, 20), entry(3, 5 * GIB, 30)];
        // 8 GiB free, want 10: the oldest (2 GiB) is enough.
        assert_eq!(choose_evictions(&entries, &pins(&[]), 10, 8 * GIB, 10 * GIB), vec![1]);
        // 6 GiB free, want 10: the oldest alone gets to 8, the next to 11.
        assert_eq!(choose_evictions(&entries, &pins(&[]), 10, 6 * GIB, 10 * GIB), vec![1, 2]);
        assert_eq!(choose_evictions(&entries, &pins(&[]), 10, 4 * GIB, 10 * GIB), vec![1, 2, 3]);
        // Exactly at the threshold is fine.
        assert!(choose_evictions(&entries, &pins(&[]), 10, 10 * GIB, 10 * GIB).is_empty());
    }

    #[test]
    fn disk_pressure_that_cannot_be_relieved_evicts_every_unpinned_image() {
        let entries = [entry(1, GIB, 10), entry(2, GIB, 20), entry(3, GIB, 30)];
        assert_eq!(choose_evictions(&entries, &pins(&[2]), 10, 0, 100 * GIB), vec![1, 3]);
    }

    #[test]
    fn count_and_disk_limits_combine() {
        let entries = [entry(1, GIB, 10), entry(2, GIB, 20), entry(3, 4 * GIB, 30), entry(4, GIB, 40)];
        // The count alone wants one eviction (id 1); the disk then still
        // lacks 2 GiB after it, so 2 and 3 follow.
        assert_eq!(choose_evictions(&entries, &pins(&[]), 3, 7 * GIB, 10 * GIB), vec![1, 2, 3]);
        // Pinning the big one makes the policy reach past it to the newest.
        assert_eq!(choose_evictions(&entries, &pins(&[3]), 3, 7 * GIB, 10 * GIB), vec![1, 2, 4]);
    }

    #[test]
    fn ties_in_recency_break_by_id_and_sizes_do_not_overflow() {
        let entries = [entry(7, u64::MAX, 5), entry(5, u64::MAX, 5), entry(6, 1, 5)];
        assert_eq!(choose_evictions(&entries, &pins(&[]), 1, 0, 1), vec![5, 6]);
        assert_eq!(choose_evictions(&entries, &pins(&[]), 3, u64::MAX, u64::MAX), Vec::<i64>::new());
    }
}
