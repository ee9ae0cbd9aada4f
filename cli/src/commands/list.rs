//! `kiln list`: work requests, newest first, a page at a time (or all).

use super::Ctx;
use crate::cli::{ListArgs, StatusArg};
use crate::error::CliError;
use crate::output::{self, Table};
use kiln_shared::client::WorkRequestFilter;
use kiln_shared::exit;
use kiln_shared::work::WorkRequest;
use kiln_shared::Page;

pub async fn run(ctx: &Ctx, args: ListArgs) -> Result<u8, CliError> {
    let mut filter = WorkRequestFilter {
        status: args.status.map(|s| status(s).to_owned()),
        task_name: args.task_name,
        parent: args.parent,
        cursor: args.cursor,
        limit: Some(args.limit),
    };
    let mut page = ctx.api(ctx.client.work_requests(&filter)).await?;
    if args.all {
        while let Some(next) = page.next.take() {
            filter.cursor = Some(next);
            let more = ctx.api(ctx.client.work_requests(&filter)).await?;
            page.items.extend(more.items);
            page.next = more.next;
        }
    }
    if ctx.json {
        output::json(&page)?;
    } else {
        print_table(&page)?;
    }
    Ok(exit::SUCCESS)
}

fn status(s: StatusArg) -> &'static str {
    match s {
        StatusArg::Blocked => "blocked",
        StatusArg::Pending => "pending",
        StatusArg::Running => "running",
        StatusArg::Completed => "completed",
        StatusArg::Aborted => "aborted",
    }
}

fn print_table(page: &Page<WorkRequest>) -> Result<(), CliError> {
    let mut table = Table::new(&["ID", "TYPE", "TASK", "STATUS", "RESULT", "WORKER", "ATTEMPT", "CREATED"]);
    for wr in &page.items {
        table.row(vec![
            wr.id.to_string(),
            wr.task_type.to_string(),
            wr.task_name.clone(),
            wr.status.to_string(),
            output::opt(wr.result),
            output::opt(wr.worker.as_deref()),
            wr.attempt.to_string(),
            output::time(Some(wr.created_at)),
        ]);
    }
    table.print()?;
    if let Some(next) = &page.next {
        eprintln!("(more: --cursor {next}, or --all)");
    }
    Ok(())
}
