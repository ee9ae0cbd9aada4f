//! Workflow templates, stored whole and replaced whole.

use super::{json_map, parse_ts, to_json, SqliteStore};
use crate::store::workflow::TemplateStore;
use crate::store::{ts, StoreError, StoreResult};
use kiln_shared::workflow::{MergeMode, WorkflowTemplate, WorkflowTemplateSpec};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "name, task_name, task_data, allowed, merge, priority, created_at, updated_at";

type Raw = (String, String, String, String, String, i64, String, String);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn build(
    (name, task_name, task_data, allowed, merge, priority, created, updated): Raw,
) -> StoreResult<WorkflowTemplate> {
    let merge = match merge.as_str() {
        "deep" => MergeMode::Deep,
        "top" => MergeMode::Top,
        other => return Err(StoreError::Corrupt(format!("template {name}: unknown merge mode {other:?}"))),
    };
    Ok(WorkflowTemplate {
        task_data: json_map(&task_data)?,
        allowed: json_map(&allowed)?,
        merge,
        priority,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
        name,
        task_name,
    })
}

fn load(conn: &Connection, name: &str) -> StoreResult<Option<WorkflowTemplate>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM workflow_templates WHERE name = ?1"), [name], raw)
        .optional()?
        .map(build)
        .transpose()
}

impl TemplateStore for SqliteStore {
    fn put_template(&self, name: &str, spec: &WorkflowTemplateSpec) -> StoreResult<(WorkflowTemplate, bool)> {
        self.write(|tx| {
            let existed = load(tx, name)?.is_some();
            let now = ts(chrono::Utc::now());
            tx.execute(
                "INSERT INTO workflow_templates (name, task_name, task_data, allowed, merge, priority, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT(name) DO UPDATE SET task_name = excluded.task_name, task_data = excluded.task_data, \
                 allowed = excluded.allowed, merge = excluded.merge, priority = excluded.priority, \
                 updated_at = excluded.updated_at",
                params![
                    name,
                    spec.task_name,
                    to_json(&spec.task_data),
                    to_json(&spec.allowed),
                    spec.merge.as_str(),
                    spec.priority,
                    now
                ],
            )?;
            let stored = load(tx, name)?.ok_or_else(|| StoreError::NotFound(format!("workflow template {name}")))?;
            Ok((stored, !existed))
        })
    }

    fn template(&self, name: &str) -> StoreResult<Option<WorkflowTemplate>> {
        self.read(|conn| load(conn, name))
    }

    fn list_templates(&self) -> StoreResult<Vec<WorkflowTemplate>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM workflow_templates ORDER BY name"))?;
            let rows = stmt.query_map([], raw)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(build).collect()
        })
    }
}
