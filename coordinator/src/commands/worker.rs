//! `kiln-coordinator worker enable|disable|edit-metadata|list`.

use crate::cli::WorkerCommand;
use crate::store::{SqliteStore, WorkerStore};
use anyhow::bail;
use serde_json::{Map, Value};

/// `KEY=VALUE` with VALUE as JSON when it parses (`true`, `4`, `["a"]`), else a string.
fn parse_assignment(text: &str) -> anyhow::Result<(String, Value)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("--set takes KEY=VALUE, got {text:?}");
    };
    if key.is_empty() {
        bail!("--set {text:?}: the key is empty");
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

pub fn run(store: &SqliteStore, command: WorkerCommand) -> anyhow::Result<()> {
    match command {
        WorkerCommand::Enable { name } => {
            store.set_worker_enabled(&name, true)?;
            eprintln!("worker {name:?} enabled");
        }
        WorkerCommand::Disable { name } => {
            store.set_worker_enabled(&name, false)?;
            eprintln!("worker {name:?} disabled: it takes no new work; running work finishes");
        }
        WorkerCommand::EditMetadata { name, set, unset } => {
            if set.is_empty() && unset.is_empty() {
                bail!("nothing to do: give --set KEY=VALUE and/or --unset KEY");
            }
            let set: Map<String, Value> = set.iter().map(|s| parse_assignment(s)).collect::<Result<_, _>>()?;
            let w = store.edit_static_metadata(&name, &set, &unset, false)?;
            println!("{}", serde_json::to_string_pretty(&Value::Object(w.static_metadata))?);
        }
        WorkerCommand::List => {
            println!("{:<24} {:<8} {:<8} LAST SEEN", "NAME", "ROLE", "ENABLED");
            for w in store.list_workers()? {
                let seen = w.last_seen.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
                println!("{:<24} {:<8} {:<8} {seen}", w.name, w.role.as_str(), w.enabled);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_assignment;
    use serde_json::json;

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(parse_assignment("a=true").expect("ok"), ("a".into(), json!(true)));
        assert_eq!(parse_assignment("x:y=[\"amd64\"]").expect("ok"), ("x:y".into(), json!(["amd64"])));
        assert_eq!(parse_assignment("k=hello world").expect("ok"), ("k".into(), json!("hello world")));
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("=1").is_err());
    }
}
