//! Workers: registration, enablement and metadata.

use super::{json_map, parse_enum, parse_opt_ts, to_json, SqliteStore};
use crate::store::{ts, Effects, StoreError, StoreResult, WorkStore, WorkerRecord, WorkerStore};
use chrono::{DateTime, Utc};
use kiln_shared::WorkerRole;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

const COLUMNS: &str = "name, role, enabled, dynamic_metadata, static_metadata, last_seen";

type RawWorker = (String, String, bool, String, String, Option<String>);

fn raw(row: &Row<'_>) -> rusqlite::Result<RawWorker> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn build((name, role, enabled, dynamic, stat, last_seen): RawWorker) -> StoreResult<WorkerRecord> {
    Ok(WorkerRecord {
        name,
        role: parse_enum(&role)?,
        enabled,
        dynamic_metadata: json_map(&dynamic)?,
        static_metadata: json_map(&stat)?,
        last_seen: parse_opt_ts(last_seen)?,
    })
}

pub(super) fn load_worker(conn: &Connection, name: &str) -> StoreResult<Option<WorkerRecord>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM workers WHERE name = ?1"), [name], raw)
        .optional()?
        .map(build)
        .transpose()
}

fn require_worker(conn: &Connection, name: &str) -> StoreResult<WorkerRecord> {
    load_worker(conn, name)?.ok_or_else(|| StoreError::NotFound(format!("worker {name:?}")))
}

impl WorkerStore for SqliteStore {
    fn register_worker(
        &self,
        name: &str,
        role: WorkerRole,
        token_hash: &str,
        enable: bool,
    ) -> StoreResult<WorkerRecord> {
        self.write(|tx| {
            let existing: Option<(String, String)> = tx
                .query_row("SELECT token_hash, role FROM workers WHERE name = ?1", [name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            match existing {
                Some((hash, stored_role)) if hash == token_hash && stored_role == role.as_str() => {
                    if enable {
                        tx.execute("UPDATE workers SET enabled = 1 WHERE name = ?1", [name])?;
                    }
                }
                Some(_) => {
                    return Err(StoreError::conflict(
                        "name-taken",
                        format!("a worker named {name:?} is registered with another token or role"),
                    ))
                }
                None => {
                    let clash: i64 =
                        tx.query_row("SELECT COUNT(*) FROM workers WHERE token_hash = ?1", [token_hash], |r| r.get(0))?;
                    if clash > 0 {
                        return Err(StoreError::conflict("token-taken", "that token belongs to another worker"));
                    }
                    tx.execute(
                        "INSERT INTO workers (name, role, token_hash, enabled, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![name, role.as_str(), token_hash, enable, ts(Utc::now())],
                    )?;
                }
            }
            require_worker(tx, name)
        })
    }

    fn worker(&self, name: &str) -> StoreResult<Option<WorkerRecord>> {
        self.read(|conn| load_worker(conn, name))
    }

    fn worker_by_token(&self, hash: &str) -> StoreResult<Option<WorkerRecord>> {
        self.read(|conn| {
            conn.query_row(&format!("SELECT {COLUMNS} FROM workers WHERE token_hash = ?1"), [hash], raw)
                .optional()?
                .map(build)
                .transpose()
        })
    }

    fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM workers ORDER BY name"))?;
            let rows = stmt.query_map([], raw)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(build).collect()
        })
    }

    fn set_worker_enabled(&self, name: &str, enabled: bool) -> StoreResult<WorkerRecord> {
        self.write(|tx| {
            tx.execute("UPDATE workers SET enabled = ?2 WHERE name = ?1", params![name, enabled])?;
            require_worker(tx, name)
        })
    }

    fn delete_worker(&self, name: &str) -> StoreResult<Effects> {
        // Its running work ends first, each attempt in its own transaction.
        self.read(|conn| require_worker(conn, name))?;
        let mut effects = Effects::default();
        for work in self.running_for_worker(name)? {
            effects.merge(self.fail_attempt(work, "worker-lost")?);
        }
        self.write(|tx| {
            tx.execute("DELETE FROM workers WHERE name = ?1", [name])?;
            Ok(())
        })?;
        Ok(effects)
    }

    fn edit_static_metadata(
        &self,
        name: &str,
        set: &Map<String, Value>,
        unset: &[String],
        replace: bool,
    ) -> StoreResult<WorkerRecord> {
        self.write(|tx| {
            let mut current = if replace { Map::new() } else { require_worker(tx, name)?.static_metadata };
            for (k, v) in set {
                current.insert(k.clone(), v.clone());
            }
            for k in unset {
                current.remove(k);
            }
            let n = tx
                .execute("UPDATE workers SET static_metadata = ?2 WHERE name = ?1", params![name, to_json(&current)])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("worker {name:?}")));
            }
            require_worker(tx, name)
        })
    }

    fn set_dynamic_metadata(&self, name: &str, metadata: &Map<String, Value>) -> StoreResult<WorkerRecord> {
        self.write(|tx| {
            tx.execute("UPDATE workers SET dynamic_metadata = ?2 WHERE name = ?1", params![name, to_json(metadata)])?;
            require_worker(tx, name)
        })
    }

    fn touch_worker(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute("UPDATE workers SET last_seen = ?2 WHERE name = ?1", params![name, ts(now)])?;
            Ok(())
        })
    }
}
