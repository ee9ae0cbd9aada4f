//! `log.jsonl`: the task's output as the wire's JSON lines (DESIGN §6a),
//! numbered by the shim, read incrementally by the daemon.

use chrono::Utc;
use kiln_shared::work::{LogLine, LogStream};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Longest line kept whole; longer output is split.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes kept on disk per task before an explicit truncation line.
pub const MAX_LOG_BYTES: u64 = 512 << 20;

/// Appends numbered lines; shared by the shim's reader threads.
#[derive(Debug, Clone)]
pub struct LogWriter {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    seq: u64,
    bytes: u64,
    truncated: bool,
}

impl LogWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        Ok(LogWriter { inner: Arc::new(Mutex::new(Inner { file, seq: 0, bytes: 0, truncated: false })) })
    }

    /// Append one line (without its newline).
    pub fn line(&self, stream: LogStream, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.truncated {
            return;
        }
        let (stream, text) = if inner.bytes + text.len() as u64 > MAX_LOG_BYTES {
            inner.truncated = true;
            (LogStream::Kiln, format!("log truncated: the task wrote more than {MAX_LOG_BYTES} bytes"))
        } else {
            (stream, text.to_owned())
        };
        inner.seq += 1;
        inner.bytes += text.len() as u64;
        let line = LogLine { seq: inner.seq, ts: Utc::now(), stream, text, attempt: None };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            // A failed write has nowhere better to be reported than here.
            let _ = inner.file.write_all(&json);
        }
    }

    pub fn kiln(&self, text: &str) {
        self.line(LogStream::Kiln, text);
    }

    pub fn sync(&self) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner.file.sync_all();
    }
}

/// Copy a stream into the log line by line until EOF.
pub fn pump(mut from: impl Read, stream: LogStream, log: &LogWriter) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(pos + 1);
            pending.pop();
            log.line(stream, &String::from_utf8_lossy(&pending));
            pending = rest;
        }
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            log.line(stream, &String::from_utf8_lossy(&pending));
            pending = rest;
        }
    }
    if !pending.is_empty() {
        log.line(stream, &String::from_utf8_lossy(&pending));
    }
}

/// Reads complete lines of a growing `log.jsonl` from a byte offset.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogCursor {
    pub offset: u64,
}

impl LogCursor {
    /// Lines completed since the last call (a half-written last line waits).
    pub fn read_new(&mut self, path: &Path) -> std::io::Result<Vec<LogLine>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut raw = Vec::new();
        loop {
            raw.clear();
            let n = reader.read_until(b'\n', &mut raw)?;
            if n == 0 || raw.last() != Some(&b'\n') {
                break;
            }
            self.offset += n as u64;
            if let Ok(line) = serde_json::from_slice::<LogLine>(&raw) {
                lines.push(line);
            }
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pumps_lines_and_reads_them_back_incrementally() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log.jsonl");
        let log = LogWriter::create(&path).expect("create");
        let mut cursor = LogCursor::default();
        pump(&b"one\ntwo\npartial"[..], LogStream::Stdout, &log);
        log.kiln("done");
        let lines = cursor.read_new(&path).expect("read");
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "partial", "done"]);
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(cursor.read_new(&path).expect("again").is_empty());
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        pump(&long[..], LogStream::Stderr, &log);
        assert_eq!(cursor.read_new(&path).expect("long").len(), 3, "long output is split");
    }
}
