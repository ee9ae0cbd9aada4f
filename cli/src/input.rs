//! Parsing what users type: JSON given inline, as `@FILE` or as `-`
//! (standard input), and `KEY=VALUE` pairs.

use crate::error::CliError;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::PathBuf;

/// A JSON object from `--flag JSON|@FILE|-`.
pub fn json_object(flag: &str, arg: &str) -> Result<Map<String, Value>, CliError> {
    let (text, origin) = if let Some(path) = arg.strip_prefix('@') {
        let path = PathBuf::from(path);
        let text =
            std::fs::read_to_string(&path).map_err(|source| CliError::ReadFile { path: path.clone(), source })?;
        (text, format!(" in {}", path.display()))
    } else if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadFile { path: "standard input".into(), source })?;
        (text, " on standard input".to_owned())
    } else {
        (arg.to_owned(), String::new())
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CliError::usage(format!("{flag}: expected a JSON object{origin}, got {}", kind(&other)))),
        Err(e) => Err(CliError::usage(format!("{flag}: invalid JSON{origin}: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `KEY=VALUE`; the value is JSON when it parses as JSON, else a string.
pub fn key_value(flag: &str, arg: &str) -> Result<(String, Value), CliError> {
    let (key, value) = arg
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| CliError::usage(format!("{flag}: expected KEY=VALUE, got {arg:?}")))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// `KEY=VALUE` with the value kept as text (query filters).
pub fn key_text(flag: &str, arg: &str) -> Result<(String, String), CliError> {
    arg.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| CliError::usage(format!("{flag}: expected KEY=VALUE, got {arg:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_and_file_json() {
        assert_eq!(json_object("--data", r#"{"a": 1}"#).expect("ok").get("a"), Some(&json!(1)));
        let err = json_object("--data", "[1]").expect_err("not an object");
        assert!(err.to_string().contains("an array"), "{err}");
        let err = json_object("--data", "{oops").expect_err("bad json");
        assert_eq!(err.exit_code(), 64);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.json");
        std::fs::write(&path, r#"{"b": true}"#).expect("write");
        let map = json_object("--data", &format!("@{}", path.display())).expect("file");
        assert_eq!(map.get("b"), Some(&json!(true)));
        let err = json_object("--data", "@/nonexistent/x.json").expect_err("missing file");
        assert_eq!(err.exit_code(), 66);
    }

    #[test]
    fn key_values() {
        assert_eq!(key_value("--set", "n=3").expect("ok"), ("n".into(), json!(3)));
        assert_eq!(key_value("--set", "a=amd64").expect("ok"), ("a".into(), json!("amd64")));
        assert_eq!(key_value("--set", "l=[\"x\"]").expect("ok"), ("l".into(), json!(["x"])));
        assert!(key_value("--set", "novalue").is_err());
        assert!(key_text("--filter", "=x").is_err());
    }
}
