//! The `kiln` command line (DESIGN §8), as clap definitions. The shell
//! completions and the man page are generated from these same definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Exit codes, shown at the end of `kiln --help` and in the man page.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success (with --wait: the work request completed success or skipped)
  1   with --wait: the work request completed failure
  2   with --wait: the work request completed error
  3   with --wait: the work request was aborted
  64  bad command line or bad input (including input the coordinator refused)
  65  the coordinator refused the request as it stands (not found, conflict)
  66  a local file could not be read
  69  the coordinator could not be reached, or failed
  73  a local file could not be written
  75  --timeout passed before the work request finished
  76  the coordinator's reply was not understood, or a download was corrupt
  77  missing, unknown or revoked token, or the token may not do this
  78  bad configuration (no server, unreadable or invalid config file)";

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kiln command-line client: submit and follow work, manage workers and artifacts",
    long_about = "Kiln command-line client: submit and follow work, manage workers and artifacts.\n\n\
                  The server and token come from --server/--token, else KILN_SERVER/KILN_TOKEN, \
                  else ~/.config/kiln/config.toml (keys `server` and `token`).",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Coordinator URL, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, env = "KILN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// API token (a user or admin token from `kiln-coordinator token create`).
    #[arg(long, global = true, env = "KILN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificates (PEM) to trust for an https:// coordinator, beside the system's.
    #[arg(long, global = true, env = "KILN_CA_CERTIFICATE", value_name = "PEM")]
    pub ca_certificate: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/kiln/config.toml or ~/.config/kiln/config.toml].
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables and messages (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or spinners.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a work request; with --wait, follow it to the end.
    Submit(SubmitArgs),
    /// Wait for a work request to finish; exit with its result's code.
    Wait(WaitArgs),
    /// Show one work request.
    Show(IdArg),
    /// List work requests, newest first.
    List(ListArgs),
    /// Abort a work request (and stop it on its agent).
    Abort(IdArg),
    /// Retry a failed, errored or aborted work request.
    Retry(IdArg),
    /// Complete a `wait` task (e.g. an external approval).
    Complete(CompleteArgs),
    /// Add dependencies to a work request that has not started.
    Depend(DependArgs),
    /// Print a work request's log; -f follows it live until the request ends.
    Logs(LogsArgs),
    /// List workers, or manage one (admin).
    Workers(WorkersArgs),
    /// Start a workflow from a template; with --wait, follow it to the end.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// List, show and define workflow templates (defining needs admin).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Upload, download, list and show artifacts.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Revoke API tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check that the coordinator answers.
    Health,
    /// Print the coordinator's Prometheus metrics.
    Metrics,
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Manpage(ManpageArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskTypeArg {
    Worker,
    Server,
    Internal,
    Workflow,
    Signing,
    Wait,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Task type.
    #[arg(value_enum)]
    pub task_type: TaskTypeArg,
    /// Task name, e.g. noop, command, sbuild.
    pub task_name: String,
    /// Task data: inline JSON, @FILE, or - for standard input.
    #[arg(long, short = 'd', value_name = "JSON|@FILE|-")]
    pub data: Option<String>,
    /// Workflow data: inline JSON, @FILE, or -.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub workflow_data: Option<String>,
    /// A work request this one depends on (repeatable).
    #[arg(long = "dep", value_name = "ID")]
    pub deps: Vec<i64>,
    /// Priority (above 0 needs an admin token).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// The workflow this request belongs to.
    #[arg(long, value_name = "ID")]
    pub parent: Option<i64>,
    /// Follow the request until it finishes and exit with its result's code.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 75).
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Work request id.
    pub id: i64,
    /// Give up after this many seconds (exit 75).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Work request id.
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Blocked,
    Pending,
    Running,
    Completed,
    Aborted,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only requests of this task name.
    #[arg(long, value_name = "NAME")]
    pub task_name: Option<String>,
    /// Only children of this workflow.
    #[arg(long, value_name = "ID")]
    pub parent: Option<i64>,
    /// Requests per page (the coordinator caps it at 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Start after this cursor (the `next` of a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Fetch every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultArg {
    Success,
    Failure,
    Error,
    Skipped,
}

#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// Work request id (a `wait` task).
    pub id: i64,
    /// The result to record.
    #[arg(long, value_enum, default_value = "success")]
    pub result: ResultArg,
    /// Output data: inline JSON, @FILE, or -.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub output_data: Option<String>,
}

#[derive(Debug, Args)]
pub struct DependArgs {
    /// Work request id.
    pub id: i64,
    /// The work request it must wait for (repeatable).
    #[arg(long = "on", value_name = "ID", required = true)]
    pub on: Vec<i64>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Work request id.
    pub id: i64,
    /// Keep following new lines until the work request ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this attempt's lines.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Prefix each line with its time and stream.
    #[arg(long, short = 't')]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(subcommand)]
    pub command: Option<WorkersCommand>,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List workers (the default).
    List,
    /// Show one worker with its metadata.
    Show { name: String },
    /// Let a worker take work (admin).
    Enable { name: String },
    /// Stop new work reaching a worker; its running work finishes (admin).
    Disable { name: String },
    /// Delete a worker; its running work ends as worker-lost (admin).
    Delete { name: String },
    /// Set or unset static metadata keys, which override the agent's own (admin).
    SetMetadata {
        name: String,
        /// KEY=VALUE; VALUE is read as JSON when it parses, else as a string.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a key.
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
        /// Start from no static metadata instead of the current keys.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Declare an artifact and upload its files (directories are walked).
    Upload(UploadArgs),
    /// Download an artifact's files, checking their sha256.
    Download(DownloadArgs),
    /// List artifacts, newest first.
    List(ArtifactListArgs),
    /// Show one artifact.
    Show {
        /// Artifact id.
        id: i64,
    },
    /// Upload a Debian source package (.dsc and the files it lists, their
    /// checksums verified first) as a kiln:source-package artifact.
    #[command(name = "import-dsc")]
    ImportDsc {
        /// The .dsc; the files it lists are read from its directory.
        dsc: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Category, e.g. kiln:system-tarball.
    #[arg(long, short = 'c')]
    pub category: String,
    /// Data: inline JSON, @FILE, or -.
    #[arg(long, short = 'd', value_name = "JSON|@FILE|-")]
    pub data: Option<String>,
    /// The work request that produced it.
    #[arg(long, value_name = "ID")]
    pub work_request: Option<i64>,
    /// Files (stored under their base name) and directories (their
    /// contents, stored under paths relative to the directory). None: an
    /// artifact of data only.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Artifact id.
    pub id: i64,
    /// Directory to write into (created if needed).
    #[arg(long, short = 'o', default_value = ".", value_name = "DIR")]
    pub output: PathBuf,
    /// Only this file of the artifact (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactListArgs {
    /// Only this category.
    #[arg(long, short = 'c')]
    pub category: Option<String>,
    /// KEY=VALUE: only artifacts whose data has this value (repeatable).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Artifacts per page (the coordinator caps it at 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Start after this cursor (the `next` of a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Fetch every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Start a workflow: the template's task_data merged with yours.
    Start(WorkflowStartArgs),
    /// Show a workflow as a tree: each node's name, task, status and result.
    Show {
        /// The workflow's work request id.
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct WorkflowStartArgs {
    /// Template name.
    pub template: String,
    /// Your task data: inline JSON, @FILE, or -.
    #[arg(long, short = 'd', value_name = "JSON|@FILE|-")]
    pub data: Option<String>,
    /// Adjustment to the template's priority (above 0 needs an admin token).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// Follow the workflow until it finishes and exit with its result's code.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 75).
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List workflow templates.
    List,
    /// Show one template.
    Show { name: String },
    /// Create or replace a template (admin).
    Put {
        name: String,
        /// The template: {"task_name", "task_data"?, "allowed"?, "merge"?: "top"|"deep", "priority"?}
        /// as inline JSON, @FILE, or -.
        #[arg(long, value_name = "JSON|@FILE|-")]
        spec: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Revoke a token by name (admin).
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write kiln.1 and one page per subcommand (kiln-submit.1, ...) here.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_submit_with_repeated_deps() {
        let cli = Cli::try_parse_from(["kiln", "submit", "worker", "noop", "--dep", "1", "--dep", "2", "--wait"])
            .expect("parses");
        let Command::Submit(args) = cli.command else { panic!("not submit") };
        assert_eq!(args.deps, vec![1, 2]);
        assert!(args.wait);
        assert!(Cli::try_parse_from(["kiln", "submit", "nonsense", "noop"]).is_err());
        assert!(Cli::try_parse_from(["kiln", "submit", "worker", "noop", "--timeout", "5"]).is_err());
    }
}
