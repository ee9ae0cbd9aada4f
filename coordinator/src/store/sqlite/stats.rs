//! Aggregates for `GET /metrics`: counts by status (the `(status, id)`
//! index), worker counts (one row per worker) and stored log bytes (one row
//! per attempt that logged).

use super::{parse_enum, SqliteStore};
use crate::store::{ts, StatsStore, StoreResult, StoreStats};
use chrono::{DateTime, Utc};

impl StatsStore for SqliteStore {
    fn stats(&self, connected_since: DateTime<Utc>) -> StoreResult<StoreStats> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM work_requests GROUP BY status")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let work_by_status =
                rows.into_iter().map(|(status, n)| Ok((parse_enum(&status)?, n))).collect::<StoreResult<Vec<_>>>()?;
            let (workers, workers_enabled, workers_connected) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(last_seen >= ?1), 0) FROM workers",
                [ts(connected_since)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let workers_busy = conn.query_row(
                "SELECT COUNT(DISTINCT worker) FROM work_requests WHERE status = 'running' AND worker IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            let log_bytes = conn.query_row("SELECT COALESCE(SUM(bytes), 0) FROM log_state", [], |r| r.get(0))?;
            Ok(StoreStats { work_by_status, workers, workers_enabled, workers_connected, workers_busy, log_bytes })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewWork, WorkStore, WorkerStore};
    use kiln_shared::{TaskType, WorkStatus, WorkerRole};

    fn noop() -> NewWork {
        NewWork {
            task_type: TaskType::Worker,
            task_name: "noop".into(),
            task_data: Default::default(),
            workflow_data: Default::default(),
            dependencies: Vec::new(),
            parent: None,
            priority: 0,
            priority_adjustment: 0,
            created_by: "t".into(),
            requirements: Some(crate::scheduler::requirements::Requirements::new(WorkerRole::Worker, "noop", 1)),
            max_retries: 3,
        }
    }

    #[test]
    fn counts_work_and_workers() {
        let store = SqliteStore::in_memory().expect("store");
        let empty = store.stats(Utc::now()).expect("stats");
        assert_eq!(empty, StoreStats::default());
        for _ in 0..3 {
            store.create_work_request(noop()).expect("create");
        }
        store.register_worker("w1", WorkerRole::Worker, "h1", true).expect("register");
        store.register_worker("w2", WorkerRole::Worker, "h2", false).expect("register");
        let before = Utc::now();
        store.touch_worker("w1", Utc::now()).expect("touch");
        assert!(store.assign(1, "w1", Utc::now()).expect("assign").is_some());
        let stats = store.stats(before).expect("stats");
        assert_eq!(stats.work_by_status, vec![(WorkStatus::Pending, 2), (WorkStatus::Running, 1)]);
        assert_eq!((stats.workers, stats.workers_enabled, stats.workers_connected, stats.workers_busy), (2, 1, 1, 1));
    }
}
