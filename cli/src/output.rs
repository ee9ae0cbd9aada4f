//! How results are printed: aligned tables and `key: value` blocks for
//! people, one JSON document for scripts (`--json`).

use crate::error::CliError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;

/// Print `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Corrupt(format!("failed to encode the output as JSON: {e}")))?;
    line(&text)
}

/// Print one line on stdout. A closed pipe (`kiln list | head`) is not an
/// error worth a message.
pub fn line(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::WriteFile { path: "standard output".into(), source: e })
        }
        _ => Ok(()),
    }
}

/// Write `text` as is on stdout (the caller puts in the newlines).
pub fn raw(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::WriteFile { path: "standard output".into(), source: e })
        }
        _ => Ok(()),
    }
}

/// A table with a header row; columns are padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table { rows: vec![header.iter().map(|h| (*h).to_owned()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut text = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out.pop();
        out
    }

    pub fn print(&self) -> Result<(), CliError> {
        line(&self.render())
    }
}

/// `key: value` lines with the keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().map(|(k, v)| format!("{:<width$} {v}", format!("{k}:"))).collect::<Vec<_>>().join("\n")
}

/// A time for a table: UTC, to the second.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".to_owned())
}

/// An optional cell.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Bytes for people: 1.5 MiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["ID", "STATUS", "TASK"]);
        t.row(vec!["7".into(), "pending".into(), "noop".into()]);
        t.row(vec!["1234".into(), "-".into(), "command".into()]);
        assert_eq!(t.render(), "ID    STATUS   TASK\n7     pending  noop\n1234  -        command");
    }

    #[test]
    fn sizes_and_fields() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(fields(&[("id", "1".into()), ("status", "x".into())]), "id:     1\nstatus: x");
    }
}
