//! Versioned schema migrations, applied in order and recorded in
//! `PRAGMA user_version`. Never edit a released migration: append one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        enabled INTEGER NOT NULL,
        dynamic_metadata TEXT NOT NULL DEFAULT '{}',
        static_metadata TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        last_seen TEXT
    );
    CREATE TABLE work_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_type TEXT NOT NULL,
        task_name TEXT NOT NULL,
        task_data TEXT NOT NULL,
        workflow_data TEXT NOT NULL,
        parent INTEGER REFERENCES work_requests(id),
        status TEXT NOT NULL,
        result TEXT,
        worker TEXT,
        attempt INTEGER NOT NULL,
        priority_base INTEGER NOT NULL,
        priority_adjustment INTEGER NOT NULL DEFAULT 0,
        resolved_backend TEXT,
        abort_reason TEXT,
        aborted_by INTEGER,
        workflow_runtime_status TEXT,
        created_by TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        completed_at TEXT,
        output_data TEXT NOT NULL DEFAULT '{}',
        retries_left INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        requirements TEXT
    );
    CREATE INDEX work_requests_status ON work_requests(status, id);
    CREATE INDEX work_requests_parent ON work_requests(parent);
    CREATE INDEX work_requests_worker ON work_requests(worker, status);
    CREATE INDEX work_requests_aborted_by ON work_requests(aborted_by);
    CREATE TABLE dependencies (
        work_request INTEGER NOT NULL REFERENCES work_requests(id),
        depends_on INTEGER NOT NULL REFERENCES work_requests(id),
        PRIMARY KEY (work_request, depends_on)
    );
    CREATE INDEX dependencies_reverse ON dependencies(depends_on);
    CREATE TABLE attempts (
        work_request INTEGER NOT NULL REFERENCES work_requests(id),
        attempt INTEGER NOT NULL,
        worker TEXT,
        started_at TEXT,
        completed_at TEXT,
        result TEXT,
        abort_reason TEXT,
        PRIMARY KEY (work_request, attempt)
    );
    CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY,
        work_request INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        stream TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX log_lines_request ON log_lines(work_request, id);
    CREATE TABLE log_state (
        work_request INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        acknowledged_seq INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        PRIMARY KEY (work_request, attempt)
    );
    CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        category TEXT NOT NULL,
        data TEXT NOT NULL,
        work_request INTEGER,
        created_by TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX artifacts_category ON artifacts(category, id);
    CREATE TABLE artifact_files (
        artifact INTEGER NOT NULL REFERENCES artifacts(id),
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        complete INTEGER NOT NULL,
        PRIMARY KEY (artifact, path)
    );
    "#,
    // 2: workflows, coordinator-run tasks and templates.
    r#"
    -- A workflow's orchestrator has populated it (it may finish now).
    ALTER TABLE work_requests ADD COLUMN populated INTEGER NOT NULL DEFAULT 0;
    -- When a wait/delay completes (normalised timestamp, sorts as text).
    ALTER TABLE work_requests ADD COLUMN wake_at TEXT;
    CREATE INDEX work_requests_kind ON work_requests(task_type, status, id);
    CREATE INDEX work_requests_parent_status ON work_requests(parent, status);
    CREATE INDEX work_requests_wake ON work_requests(wake_at) WHERE wake_at IS NOT NULL;
    -- An edge is done once its dependency is final: a dependent with no
    -- open edge left is looked at once, not at every dependency's end.
    ALTER TABLE dependencies ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
    UPDATE dependencies SET done = 1 WHERE depends_on IN
        (SELECT id FROM work_requests WHERE status IN ('completed', 'aborted'));
    CREATE INDEX dependencies_open ON dependencies(work_request, done);
    -- One orchestration per root workflow at a time.
    CREATE TABLE orchestration_leases (
        root INTEGER PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE workflow_templates (
        name TEXT PRIMARY KEY,
        task_name TEXT NOT NULL,
        task_data TEXT NOT NULL,
        allowed TEXT NOT NULL,
        merge TEXT NOT NULL,
        priority INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX artifacts_created ON artifacts(created_at);
    CREATE INDEX artifact_files_sha256 ON artifact_files(sha256);
    "#,
    // Signing keys (issue 8): public facts and access lists only.
    r#"
    CREATE TABLE signing_keys (
        fingerprint TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        description TEXT NOT NULL,
        public_key_artifact INTEGER,
        worker TEXT,
        users TEXT NOT NULL,
        workflow_templates TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    "#,
];

/// Bring the schema up to date. A database newer than this binary is refused
/// rather than misread.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Ok(Err(format!(
            "the database has schema version {current}, newer than this kiln-coordinator knows ({}); \
             upgrade kiln-coordinator",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_databases() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("sql").expect("migrate");
        migrate(&mut conn).expect("sql").expect("second run is a no-op");
        conn.pragma_update(None, "user_version", 99).expect("set");
        let err = migrate(&mut conn).expect("sql").expect_err("newer schema refused");
        assert!(err.contains("99"), "{err}");
    }
}
