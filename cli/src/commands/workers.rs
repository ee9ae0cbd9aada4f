//! `kiln workers [list|show|enable|disable|delete|set-metadata]`.

use super::Ctx;
use crate::cli::WorkersCommand;
use crate::error::CliError;
use crate::input;
use crate::output::{self, Table};
use kiln_shared::exit;
use kiln_shared::worker::{keys, Worker};
use serde_json::{Map, Value};

pub async fn run(ctx: &Ctx, command: Option<WorkersCommand>) -> Result<u8, CliError> {
    match command.unwrap_or(WorkersCommand::List) {
        WorkersCommand::List => list(ctx).await,
        WorkersCommand::Show { name } => {
            let worker = ctx.api(ctx.client.worker(&name)).await?;
            print_one(ctx, &worker)
        }
        WorkersCommand::Enable { name } => action(ctx, &name, "enable").await,
        WorkersCommand::Disable { name } => action(ctx, &name, "disable").await,
        WorkersCommand::Delete { name } => {
            ctx.api(ctx.client.delete_worker(&name)).await?;
            done(ctx, &name, "deleted")
        }
        WorkersCommand::SetMetadata { name, set, unset, replace } => {
            set_metadata(ctx, &name, &set, &unset, replace).await
        }
    }
}

async fn list(ctx: &Ctx) -> Result<u8, CliError> {
    let page = ctx.api(ctx.client.workers()).await?;
    if ctx.json {
        output::json(&page)?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "ROLE", "ENABLED", "CONNECTED", "BUSY", "ARCH", "RUNNING", "LAST SEEN"]);
    for w in &page.items {
        table.row(vec![
            w.name.clone(),
            w.role.to_string(),
            yes_no(w.enabled),
            yes_no(w.connected),
            format!("{}/{}", w.running.len(), w.concurrency),
            output::opt(w.metadata.get(keys::HOST_ARCHITECTURE).and_then(Value::as_str)),
            ids(&w.running),
            output::time(w.last_seen),
        ]);
    }
    table.print()?;
    Ok(exit::SUCCESS)
}

async fn action(ctx: &Ctx, name: &str, verb: &str) -> Result<u8, CliError> {
    let worker = ctx.api(ctx.client.worker_action(name, verb)).await?;
    if ctx.json {
        output::json(&worker)?;
        return Ok(exit::SUCCESS);
    }
    done(ctx, name, if worker.enabled { "enabled" } else { "disabled" })
}

fn done(ctx: &Ctx, name: &str, what: &str) -> Result<u8, CliError> {
    if ctx.json {
        output::json(&serde_json::json!({"name": name, "status": what}))?;
    } else {
        output::line(&format!("worker {name}: {what}"))?;
    }
    Ok(exit::SUCCESS)
}

/// The API replaces the static metadata whole: read, edit, write back.
async fn set_metadata(ctx: &Ctx, name: &str, set: &[String], unset: &[String], replace: bool) -> Result<u8, CliError> {
    let edits = set.iter().map(|kv| input::key_value("--set", kv)).collect::<Result<Vec<_>, _>>()?;
    if edits.is_empty() && unset.is_empty() && !replace {
        return Err(CliError::usage("nothing to change: give --set KEY=VALUE, --unset KEY or --replace"));
    }
    let mut metadata: Map<String, Value> =
        if replace { Map::new() } else { ctx.api(ctx.client.worker(name)).await?.static_metadata };
    for key in unset {
        metadata.remove(key);
    }
    metadata.extend(edits);
    let worker = ctx.api(ctx.client.set_static_metadata(name, &metadata)).await?;
    print_one(ctx, &worker)
}

fn print_one(ctx: &Ctx, w: &Worker) -> Result<u8, CliError> {
    if ctx.json {
        output::json(w)?;
        return Ok(exit::SUCCESS);
    }
    let mut text = output::fields(&[
        ("name", w.name.clone()),
        ("role", w.role.to_string()),
        ("enabled", yes_no(w.enabled)),
        ("connected", yes_no(w.connected)),
        ("last seen", output::time(w.last_seen)),
        ("slots", format!("{} busy of {}", w.running.len(), w.concurrency)),
        ("running", ids(&w.running)),
    ]);
    let mut table = Table::new(&["KEY", "VALUE", ""]);
    for (key, value) in &w.metadata {
        let origin = if w.static_metadata.contains_key(key) { "(static)" } else { "" };
        table.row(vec![key.clone(), value.to_string(), origin.to_owned()]);
    }
    text.push_str("\n\n");
    text.push_str(&table.render());
    output::line(&text)?;
    Ok(exit::SUCCESS)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn ids(ids: &[i64]) -> String {
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }
}
