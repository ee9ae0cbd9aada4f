//! `kiln artifact show ID`.

use super::Ctx;
use crate::error::CliError;
use crate::output::{self, Table};
use kiln_shared::artifact::{Artifact, ArtifactState};
use kiln_shared::exit;
use serde_json::Value;

pub async fn run(ctx: &Ctx, id: i64) -> Result<u8, CliError> {
    let artifact = ctx.api(ctx.client.artifact(id)).await?;
    if ctx.json {
        output::json(&artifact)?;
    } else {
        output::line(&render(&artifact))?;
    }
    Ok(exit::SUCCESS)
}

pub fn state(a: &Artifact) -> &'static str {
    match a.state {
        ArtifactState::Complete => "complete",
        ArtifactState::Incomplete => "incomplete",
    }
}

fn render(a: &Artifact) -> String {
    let mut text = output::fields(&[
        ("id", a.id.to_string()),
        ("category", a.category.clone()),
        ("state", state(a).to_owned()),
        ("work request", output::opt(a.work_request)),
        ("created", format!("{} by {}", output::time(Some(a.created_at)), output::opt(a.created_by.as_deref()))),
        ("data", Value::Object(a.data.clone()).to_string()),
    ]);
    if !a.files.is_empty() {
        let mut table = Table::new(&["PATH", "SIZE", "SHA256", "UPLOADED"]);
        for f in &a.files {
            let uploaded = if f.complete { "yes" } else { "no" };
            table.row(vec![f.path.clone(), output::size(f.size), f.sha256.clone(), uploaded.to_owned()]);
        }
        text.push_str("\n\n");
        text.push_str(&table.render());
    }
    text
}
