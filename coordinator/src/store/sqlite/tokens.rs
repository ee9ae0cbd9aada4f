//! API tokens: only their SHA-256 is stored.

use super::{parse_opt_ts, parse_ts, SqliteStore};
use crate::store::{ts, StoreError, StoreResult, TokenRecord, TokenRole, TokenStore};
use rusqlite::{params, OptionalExtension, Row};

fn record(row: &Row<'_>) -> rusqlite::Result<(String, String, String, Option<String>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn build((name, role, created, revoked): (String, String, String, Option<String>)) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        role: TokenRole::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("token role {role:?}")))?,
        created_at: parse_ts(&created)?,
        revoked: parse_opt_ts(revoked)?.is_some(),
        name,
    })
}

impl TokenStore for SqliteStore {
    fn create_token(&self, name: &str, role: TokenRole, hash: &str) -> StoreResult<()> {
        self.write(|tx| {
            let exists: bool =
                tx.query_row("SELECT COUNT(*) FROM tokens WHERE name = ?1", [name], |r| r.get::<_, i64>(0))? > 0;
            if exists {
                return Err(StoreError::conflict("name-taken", format!("a token named {name:?} exists")));
            }
            tx.execute(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash, ts(chrono::Utc::now())],
            )?;
            Ok(())
        })
    }

    fn revoke_token(&self, name: &str) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, ts(chrono::Utc::now())],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("live token {name:?}")));
            }
            Ok(())
        })
    }

    fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT name, role, created_at, revoked_at FROM tokens ORDER BY name")?;
            let rows = stmt.query_map([], record)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(build).collect()
        })
    }

    fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        self.read(|conn| {
            conn.query_row(
                "SELECT name, role, created_at, revoked_at FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                [hash],
                record,
            )
            .optional()?
            .map(build)
            .transpose()
        })
    }
}
