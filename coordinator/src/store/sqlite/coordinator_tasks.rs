//! What the coordinator's own runners need from the store: server tasks to
//! claim, delays that are due, and artifacts to expire.

use super::artifacts::EMPTY_SHA256;
use super::work::require;
use super::{json_map, parse_ts, SqliteStore};
use crate::store::workflow::{ArtifactAge, CoordinatorTaskStore};
use crate::store::{ts, StoreResult};
use chrono::{DateTime, Utc};
use kiln_shared::work::{WorkRequest, WorkRequestId};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeSet;

impl CoordinatorTaskStore for SqliteStore {
    fn pending_server_tasks(&self, limit: u32) -> StoreResult<Vec<WorkRequestId>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM work_requests WHERE task_type = 'server' AND status = 'pending' \
                 ORDER BY priority_base + priority_adjustment DESC, id LIMIT ?1",
            )?;
            let ids = stmt.query_map([limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
    }

    fn claim_server_task(&self, id: WorkRequestId, now: DateTime<Utc>) -> StoreResult<Option<WorkRequest>> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE work_requests SET status = 'running', started_at = ?2 \
                 WHERE id = ?1 AND status = 'pending' AND task_type = 'server'",
                params![id, ts(now)],
            )?;
            if n == 0 {
                return Ok(None);
            }
            tx.execute(
                "INSERT OR REPLACE INTO attempts (work_request, attempt, worker, started_at) \
                 SELECT id, attempt, NULL, started_at FROM work_requests WHERE id = ?1",
                [id],
            )?;
            require(tx, id).map(Some)
        })
    }

    fn requeue_server_tasks(&self) -> StoreResult<u64> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE work_requests SET status = 'pending', started_at = NULL \
                 WHERE task_type = 'server' AND status = 'running'",
                [],
            )?;
            Ok(n as u64)
        })
    }

    fn due_delays(&self, now: DateTime<Utc>) -> StoreResult<Vec<WorkRequestId>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM work_requests WHERE task_type = 'wait' AND status = 'running' \
                 AND wake_at IS NOT NULL AND wake_at <= ?1 ORDER BY wake_at, id",
            )?;
            let ids = stmt.query_map([ts(now)], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
    }

    fn next_wake(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.read(|conn| {
            let next: Option<String> = conn
                .query_row(
                    "SELECT MIN(wake_at) FROM work_requests WHERE task_type = 'wait' AND status = 'running'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            next.as_deref().map(parse_ts).transpose()
        })
    }

    fn artifacts_created_before(&self, before: DateTime<Utc>) -> StoreResult<Vec<ArtifactAge>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, category, created_at FROM artifacts WHERE created_at < ?1 ORDER BY id")?;
            let rows = stmt
                .query_map([ts(before)], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(id, category, created)| Ok(ArtifactAge { id, category, created_at: parse_ts(&created)? }))
                .collect()
        })
    }

    fn artifacts_in_use(&self) -> StoreResult<Vec<i64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT task_data FROM work_requests WHERE status IN ('blocked', 'pending', 'running')",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            let mut ids = BTreeSet::new();
            for text in rows {
                ids.extend(crate::tasks::referenced_artifacts(&json_map(&text)?));
            }
            Ok(ids.into_iter().collect())
        })
    }

    fn delete_artifacts(&self, ids: &[i64]) -> StoreResult<Vec<String>> {
        self.write(|tx| {
            let mut hashes = BTreeSet::new();
            for id in ids {
                let mut stmt = tx.prepare_cached("SELECT sha256 FROM artifact_files WHERE artifact = ?1")?;
                for hash in stmt.query_map([id], |r| r.get::<_, String>(0))? {
                    hashes.insert(hash?);
                }
                tx.execute("DELETE FROM artifact_files WHERE artifact = ?1", [id])?;
                tx.execute("DELETE FROM artifacts WHERE id = ?1", [id])?;
            }
            let mut orphaned = Vec::new();
            let mut used = tx.prepare_cached("SELECT 1 FROM artifact_files WHERE sha256 = ?1 LIMIT 1")?;
            for hash in hashes {
                if hash != EMPTY_SHA256 && !used.exists([&hash])? {
                    orphaned.push(hash);
                }
            }
            Ok(orphaned)
        })
    }
}
