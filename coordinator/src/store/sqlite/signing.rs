//! Signing keys and their access lists in SQLite.

use super::{parse_ts, SqliteStore};
use crate::store::signing::{KeyAccess, SigningKey, SigningKeyStore};
use crate::store::{ts, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

const COLUMNS: &str =
    "fingerprint, purpose, description, public_key_artifact, worker, users, workflow_templates, revoked, created_at";

type Raw = (String, String, String, Option<i64>, Option<String>, String, String, bool, String);

fn build(r: Raw) -> StoreResult<SigningKey> {
    let list = |s: &str| serde_json::from_str::<Vec<String>>(s).map_err(|e| StoreError::Corrupt(e.to_string()));
    Ok(SigningKey {
        users: list(&r.5)?,
        workflow_templates: list(&r.6)?,
        revoked: r.7,
        created_at: parse_ts(&r.8)?,
        fingerprint: r.0,
        purpose: r.1,
        description: r.2,
        public_key_artifact: r.3,
        worker: r.4,
    })
}

pub(super) fn load(conn: &Connection, fingerprint: &str) -> StoreResult<Option<SigningKey>> {
    let sql = format!("SELECT {COLUMNS} FROM signing_keys WHERE fingerprint = ?1");
    let raw = conn
        .query_row(&sql, [fingerprint], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        })
        .optional()?;
    raw.map(build).transpose()
}

fn json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

impl SigningKeyStore for SqliteStore {
    fn add_signing_key(&self, k: &SigningKey) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO signing_keys (fingerprint, purpose, description, public_key_artifact, worker, \
                 users, workflow_templates, revoked, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    k.fingerprint,
                    k.purpose,
                    k.description,
                    k.public_key_artifact,
                    k.worker,
                    json(&k.users),
                    json(&k.workflow_templates),
                    k.revoked,
                    ts(k.created_at)
                ],
            )?;
            Ok(())
        })
    }

    fn signing_key(&self, fingerprint: &str) -> StoreResult<Option<SigningKey>> {
        self.read(|conn| load(conn, fingerprint))
    }

    fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT fingerprint FROM signing_keys ORDER BY created_at, fingerprint")?;
            let fprs = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            fprs.iter().filter_map(|f| load(conn, f).transpose()).collect()
        })
    }

    fn set_key_access(&self, fingerprint: &str, a: &KeyAccess) -> StoreResult<SigningKey> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE signing_keys SET users = ?2, workflow_templates = ?3, revoked = (revoked OR ?4) \
                 WHERE fingerprint = ?1",
                params![fingerprint, json(&a.users), json(&a.workflow_templates), a.revoked],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("signing key {fingerprint}")));
            }
            load(tx, fingerprint)?.ok_or_else(|| StoreError::NotFound(format!("signing key {fingerprint}")))
        })
    }
}
