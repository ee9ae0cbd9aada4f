//! `kiln metrics`: the coordinator's Prometheus text, as served. With
//! `--json`, the samples as `[{"name", "labels", "value"}]`.

use super::Ctx;
use crate::error::CliError;
use crate::output;
use kiln_shared::exit;
use serde_json::{json, Map, Value};

pub async fn run(ctx: &Ctx) -> Result<u8, CliError> {
    let text = ctx.api(ctx.client.metrics()).await?;
    if ctx.json {
        output::json(&samples(&text))?;
    } else {
        output::raw(&text)?;
    }
    Ok(exit::SUCCESS)
}

/// Parse the sample lines of the text format (comments are skipped).
pub fn samples(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
                None => (series, Map::new()),
            };
            let value: f64 = value.parse().ok()?;
            Some(json!({"name": name, "labels": labels, "value": value}))
        })
        .collect()
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(text: &str) -> Map<String, Value> {
    let mut labels = Map::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), Value::String(value));
        rest = &after[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let text = "# HELP x y\n# TYPE x counter\nx_total 3\ny{a=\"1\",b=\"q\\\"z\"} 2.5\n";
        let s = samples(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], json!({"name": "x_total", "labels": {}, "value": 3.0}));
        assert_eq!(s[1], json!({"name": "y", "labels": {"a": "1", "b": "q\"z"}, "value": 2.5}));
    }
}
