//! Artifacts and their declared files. File bytes live in the file store;
//! this records which have arrived.

use super::{json_map, parse_ts, to_json, SqliteStore};
use crate::store::{ts, ArtifactFilter, ArtifactStore, StoreError, StoreResult};
use kiln_shared::artifact::{Artifact, ArtifactFile, ArtifactState, NewArtifact};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// SHA-256 of no bytes: an empty file is complete as soon as it is declared.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const COLUMNS: &str = "id, category, data, work_request, created_by, created_at";

type Raw = (i64, String, String, Option<i64>, Option<String>, String);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn build(conn: &Connection, (id, category, data, work_request, created_by, created_at): Raw) -> StoreResult<Artifact> {
    let mut stmt = conn
        .prepare_cached("SELECT path, size, sha256, complete FROM artifact_files WHERE artifact = ?1 ORDER BY path")?;
    let files = stmt
        .query_map([id], |r| {
            Ok(ArtifactFile { path: r.get(0)?, size: r.get(1)?, sha256: r.get(2)?, complete: r.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let state = if files.iter().all(|f| f.complete) { ArtifactState::Complete } else { ArtifactState::Incomplete };
    Ok(Artifact {
        id,
        category,
        data: json_map(&data)?,
        files,
        state,
        work_request,
        created_by,
        created_at: parse_ts(&created_at)?,
    })
}

pub(super) fn load(conn: &Connection, id: i64) -> StoreResult<Option<Artifact>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM artifacts WHERE id = ?1"), [id], raw)
        .optional()?
        .map(|r| build(conn, r))
        .transpose()
}

/// Artifacts matching `filter`, newest first (also used inside other
/// operations' transactions, e.g. an orchestrator's lookups).
pub(super) fn query(conn: &Connection, filter: &ArtifactFilter) -> StoreResult<Vec<Artifact>> {
    let mut sql =
        format!("SELECT {COLUMNS} FROM artifacts WHERE (?1 IS NULL OR category = ?1) AND (?2 IS NULL OR id < ?2)");
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(filter.category.clone()), Box::new(filter.before)];
    for (key, value) in &filter.data {
        // Booleans compare as true/false, numbers and strings as text.
        let p = values.len() + 1;
        sql.push_str(&format!(
            " AND (CASE json_type(data, ?{p}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
             ELSE CAST(json_extract(data, ?{p}) AS TEXT) END) = ?{}",
            p + 1
        ));
        values.push(Box::new(format!("$.\"{key}\"")));
        values.push(Box::new(value.clone()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit));
    let mut stmt = conn.prepare(&sql)?;
    let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
    let rows = stmt.query_map(params.as_slice(), raw)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(|r| build(conn, r)).collect()
}

impl ArtifactStore for SqliteStore {
    fn create_artifact(&self, new: &NewArtifact, created_by: &str) -> StoreResult<Artifact> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO artifacts (category, data, work_request, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.category, to_json(&new.data), new.work_request, created_by, ts(chrono::Utc::now())],
            )?;
            let id = tx.last_insert_rowid();
            for f in &new.files {
                let complete = f.size == 0 && f.sha256 == EMPTY_SHA256;
                tx.execute(
                    "INSERT INTO artifact_files (artifact, path, size, sha256, complete) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, f.path, f.size, f.sha256, complete],
                )?;
            }
            load(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("artifact {id}")))
        })
    }

    fn artifact(&self, id: i64) -> StoreResult<Option<Artifact>> {
        self.read(|conn| load(conn, id))
    }

    fn list_artifacts(&self, filter: &ArtifactFilter) -> StoreResult<Vec<Artifact>> {
        self.read(|conn| query(conn, filter))
    }

    fn mark_file_complete(&self, id: i64, path: &str) -> StoreResult<Artifact> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE artifact_files SET complete = 1 WHERE artifact = ?1 AND path = ?2",
                params![id, path],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("file {path:?} of artifact {id}")));
            }
            load(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("artifact {id}")))
        })
    }
}
