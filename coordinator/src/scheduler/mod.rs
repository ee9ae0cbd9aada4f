//! Matching pending work to agents (DESIGN §4): requirement classes, the
//! pure matcher, the pending index, and the wake-ups long-polls wait on.

pub mod latency;
pub mod matcher;
pub mod queue;
pub mod requirements;

use crate::store::{Effects, PendingEntry};
use latency::LatencyHistogram;
use matcher::AgentView;
use queue::PendingQueue;
use requirements::Requirements;
use std::sync::Mutex;
use tokio::sync::Notify;

/// The scheduler's shared state: the pending index and a wake-up signal for
/// agents waiting in `next`.
#[derive(Debug, Default)]
pub struct Scheduler {
    queue: Mutex<PendingQueue>,
    /// Signalled whenever work becomes pending or a slot frees up.
    pub wakeup: Notify,
    /// Time from becoming pending to being handed to an agent (observed
    /// when the index hands the request out; for work pending when this
    /// process started, counted from the start).
    pub assignment_latency: LatencyHistogram,
}

impl Scheduler {
    pub fn new(pending: Vec<PendingEntry>) -> Self {
        let mut queue = PendingQueue::default();
        for entry in pending {
            queue.insert(entry);
        }
        Scheduler { queue: Mutex::new(queue), wakeup: Notify::new(), assignment_latency: LatencyHistogram::default() }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, PendingQueue> {
        // A panic while holding the lock leaves a consistent index (every
        // mutation is a single insert/remove), so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Apply what a store operation changed, and wake waiting agents.
    pub fn apply(&self, effects: &Effects) {
        {
            let mut q = self.queue();
            for id in &effects.unpending {
                q.remove(*id);
            }
            for entry in &effects.pending {
                q.insert(entry.clone());
            }
        }
        if !effects.pending.is_empty() || !effects.finished.is_empty() {
            self.wakeup.notify_waiters();
        }
    }

    /// Take the best candidate for an agent out of the index.
    pub fn take_for(&self, agent: &AgentView<'_>) -> Option<PendingEntry> {
        let (entry, since) = self.queue().take_for_timed(agent)?;
        self.assignment_latency.observe(since.elapsed());
        Some(entry)
    }

    /// Put a candidate back (its assignment did not go through).
    pub fn put_back(&self, entry: PendingEntry) {
        self.queue().insert(entry);
    }

    pub fn pending_count(&self) -> usize {
        self.queue().len()
    }

    /// Each requirement class with its number of pending requests.
    pub fn pending_by_class(&self) -> Vec<(Requirements, usize)> {
        self.queue().classes().map(|(req, n)| (req.clone(), n)).collect()
    }
}
