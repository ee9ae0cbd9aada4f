//! `kiln artifact list [--category C] [--filter KEY=VALUE]...`.

use super::show::state;
use super::Ctx;
use crate::cli::ArtifactListArgs;
use crate::error::CliError;
use crate::input;
use crate::output::{self, Table};
use kiln_shared::exit;

pub async fn run(ctx: &Ctx, args: ArtifactListArgs) -> Result<u8, CliError> {
    let mut query: Vec<(String, String)> = Vec::new();
    if let Some(category) = &args.category {
        query.push(("category".into(), category.clone()));
    }
    for f in &args.filters {
        let (key, value) = input::key_text("--filter", f)?;
        if matches!(key.as_str(), "category" | "cursor" | "limit") {
            return Err(CliError::usage(format!("--filter: {key:?} is not a data key (use --{key})")));
        }
        query.push((key, value));
    }
    query.push(("limit".into(), args.limit.to_string()));
    let mut cursor = args.cursor.clone();
    let mut items = Vec::new();
    let next = loop {
        let mut q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = ctx.api(ctx.client.artifacts(&q)).await?;
        items.extend(page.items);
        match page.next {
            Some(next) if args.all => cursor = Some(next),
            next => break next,
        }
    };
    if ctx.json {
        output::json(&serde_json::json!({"items": items, "next": next}))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new(&["ID", "CATEGORY", "STATE", "FILES", "SIZE", "WORK REQUEST", "CREATED"]);
    for a in &items {
        table.row(vec![
            a.id.to_string(),
            a.category.clone(),
            state(a).to_owned(),
            a.files.len().to_string(),
            output::size(a.files.iter().map(|f| f.size).sum()),
            output::opt(a.work_request),
            output::time(Some(a.created_at)),
        ]);
    }
    table.print()?;
    if let Some(next) = next {
        eprintln!("(more: --cursor {next}, or --all)");
    }
    Ok(exit::SUCCESS)
}
