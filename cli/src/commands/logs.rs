//! `kiln logs ID [-f]`: a work request's log. The coordinator sends JSON
//! lines; people get the text, `--json` gets the lines as they are.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::error::CliError;
use crate::output;
use futures_util::StreamExt;
use kiln_shared::client::ClientError;
use kiln_shared::exit;
use kiln_shared::work::{LogLine, LogStream};

pub async fn run(ctx: &Ctx, args: LogsArgs) -> Result<u8, CliError> {
    let resp = ctx.api(ctx.client.log_of_attempt(args.id, args.follow, args.attempt)).await?;
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|source| ctx.error(ClientError::Transport { url: ctx.client.base_url().to_owned(), source }))?;
        pending.extend_from_slice(&chunk);
        let Some(end) = pending.iter().rposition(|b| *b == b'\n') else { continue };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        output::raw(&render(ctx, &args, &complete)?)?;
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        output::raw(&render(ctx, &args, &pending)?)?;
    }
    Ok(exit::SUCCESS)
}

/// Turn whole JSON lines into what is printed.
fn render(ctx: &Ctx, args: &LogsArgs, lines: &[u8]) -> Result<String, CliError> {
    if ctx.json {
        return Ok(String::from_utf8_lossy(lines).into_owned());
    }
    let mut out = String::new();
    for raw in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line: LogLine = serde_json::from_slice(raw)
            .map_err(|e| CliError::Corrupt(format!("the coordinator sent a log line that is not understood: {e}")))?;
        out.push_str(&format_line(&line, args.timestamps));
        out.push('\n');
    }
    Ok(out)
}

/// One log line for people: the text, with `kiln:` before the agent's own
/// lines, and with `-t` the time, attempt and stream first.
pub fn format_line(line: &LogLine, timestamps: bool) -> String {
    let text = line.text.trim_end_matches('\n');
    let text = match line.stream {
        LogStream::Kiln => format!("kiln: {text}"),
        _ => text.to_owned(),
    };
    if !timestamps {
        return text;
    }
    let when = line.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let attempt = line.attempt.map(|a| format!(" #{a}")).unwrap_or_default();
    format!("{when}{attempt} {:<6} {text}", line.stream.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_lines() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z").expect("ts").to_utc();
        let line = LogLine { seq: 1, ts, stream: LogStream::Stderr, text: "oops\n".into(), attempt: Some(2) };
        assert_eq!(format_line(&line, false), "oops");
        assert_eq!(format_line(&line, true), "2026-01-02T03:04:05.678Z #2 stderr oops");
        let kiln = LogLine { stream: LogStream::Kiln, text: "truncated".into(), ..line };
        assert_eq!(format_line(&kiln, false), "kiln: truncated");
    }
}
