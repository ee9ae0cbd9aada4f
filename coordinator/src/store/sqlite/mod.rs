//! The SQLite store: one connection in WAL mode behind a mutex. SQLite takes
//! one writer at a time anyway; every operation is one `BEGIN IMMEDIATE`
//! transaction, so it is applied whole or not at all.
//!
//! Durability: WAL with `synchronous=NORMAL` keeps every committed
//! transaction across a crash or `kill -9` of the process (the WAL is
//! written before commit returns); only a power loss may lose the last
//! commits, which is out of scope (docs/durability.md).

mod artifacts;
pub use artifacts::EMPTY_SHA256;
mod coordinator_tasks;
mod lifecycle;
mod logs;
mod orchestration;
mod runtime;
mod signing;
mod stats;
mod templates;
mod tokens;
mod transitions;
mod work;
mod workers;
#[cfg(test)]
mod workflow_tests;

use super::{migrations, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?.map_err(StoreError::Corrupt)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    /// An in-memory database, for unit tests.
    pub fn in_memory() -> StoreResult<Self> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?.map_err(StoreError::Corrupt)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-operation rolled its transaction back on drop, so the
        // connection is still consistent.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `f` in a write transaction; commit on success.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Run `f` on the connection for reads.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        f(&self.conn())
    }
}

pub(crate) fn to_json(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

pub(crate) fn json_map(text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!("expected a JSON object, found {text:?}"))),
    }
}

pub(crate) fn parse_ts(text: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {text:?}: {e}")))
}

pub(crate) fn parse_opt_ts(text: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_ts).transpose()
}

pub(crate) fn parse_enum<T: std::str::FromStr>(text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("unknown stored value {text:?}")))
}
