//! Task logs: seq-numbered lines per attempt, idempotent append, a byte cap
//! that ends in one explicit truncation line.

use super::{parse_ts, SqliteStore};
use crate::store::{ts, LogStore, StoreError, StoreResult};
use kiln_shared::work::{LogAck, LogLine, LogStream, WorkRequestId};
use rusqlite::{params, OptionalExtension};

impl LogStore for SqliteStore {
    fn append_log(&self, id: WorkRequestId, attempt: u32, lines: &[LogLine], cap: u64) -> StoreResult<LogAck> {
        self.write(|tx| {
            let (mut acked, mut bytes, mut truncated): (u64, u64, bool) = tx
                .query_row(
                    "SELECT acknowledged_seq, bytes, truncated FROM log_state WHERE work_request = ?1 AND attempt = ?2",
                    params![id, attempt],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .unwrap_or((0, 0, false));
            let mut insert = tx.prepare_cached(
                "INSERT INTO log_lines (work_request, attempt, seq, ts, stream, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for line in lines {
                if line.seq <= acked {
                    continue; // already have it: a resend after a lost reply
                }
                acked = line.seq;
                if truncated {
                    continue;
                }
                let size = line.text.len() as u64;
                if bytes + size > cap {
                    truncated = true;
                    let text = format!(
                        "log truncated: this attempt's log reached the cap of {cap} bytes; later lines were dropped"
                    );
                    insert.execute(params![id, attempt, line.seq, ts(line.ts), LogStream::Kiln.as_str(), text])?;
                    continue;
                }
                bytes += size;
                insert.execute(params![id, attempt, line.seq, ts(line.ts), line.stream.as_str(), line.text])?;
            }
            tx.execute(
                "INSERT INTO log_state (work_request, attempt, acknowledged_seq, bytes, truncated) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (work_request, attempt) DO UPDATE SET \
                 acknowledged_seq = excluded.acknowledged_seq, bytes = excluded.bytes, truncated = excluded.truncated",
                params![id, attempt, acked, bytes, truncated],
            )?;
            Ok(LogAck { acknowledged_seq: acked })
        })
    }

    fn log_lines(&self, id: WorkRequestId, after: i64, limit: u32) -> StoreResult<Vec<(i64, LogLine)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, attempt, seq, ts, stream, text FROM log_lines \
                 WHERE work_request = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![id, after, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, u64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(pos, attempt, seq, when, stream, text)| {
                    let stream = match stream.as_str() {
                        "stdout" => LogStream::Stdout,
                        "stderr" => LogStream::Stderr,
                        "kiln" => LogStream::Kiln,
                        other => return Err(StoreError::Corrupt(format!("log stream {other:?}"))),
                    };
                    Ok((pos, LogLine { seq, ts: parse_ts(&when)?, stream, text, attempt: Some(attempt) }))
                })
                .collect()
        })
    }
}
