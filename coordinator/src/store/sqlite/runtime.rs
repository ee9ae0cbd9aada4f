//! `workflow_runtime_status` computed when a workflow is read, from the
//! in-progress requests below it (one indexed recursive query), so that no
//! child's transition has to rewrite its ancestors.

use super::parse_enum;
use crate::dag::runtime::{runtime_status, DescendantGroup, RuntimeStatus};
use crate::store::StoreResult;
use kiln_shared::work::WorkRequestId;
use kiln_shared::{TaskType, WorkStatus};
use rusqlite::Connection;

/// The runtime status of workflow `id`, whose own status is `own`.
pub(super) fn workflow_runtime_status(
    conn: &Connection,
    id: WorkRequestId,
    own: WorkStatus,
) -> StoreResult<RuntimeStatus> {
    if own != WorkStatus::Running {
        return Ok(runtime_status(own, &[]));
    }
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE d(id, task_type, status, workflow_data) AS ( \
           SELECT id, task_type, status, workflow_data FROM work_requests \
             WHERE parent = ?1 AND status IN ('blocked', 'pending', 'running') \
           UNION ALL \
           SELECT w.id, w.task_type, w.status, w.workflow_data FROM d JOIN work_requests w ON w.parent = d.id \
             WHERE d.task_type = 'workflow' AND w.status IN ('blocked', 'pending', 'running') \
         ) \
         SELECT DISTINCT task_type, status, \
           COALESCE(json_extract(workflow_data, '$.needs_input') = 1, 0) FROM d",
    )?;
    let raw = stmt
        .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let groups = raw
        .into_iter()
        .map(|(task_type, status, needs_input)| {
            Ok(DescendantGroup {
                task_type: parse_enum::<TaskType>(&task_type)?,
                status: parse_enum(&status)?,
                needs_input,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(runtime_status(own, &groups))
}
