//! The `kiln-coordinator` command line (DESIGN §8).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kiln-coordinator",
    version,
    about = "Kiln coordinator: stores work, matches it to agents, drives the DAG"
)]
pub struct Cli {
    /// Data directory (database and artifact files); overrides the config file.
    #[arg(long, global = true, env = "KILN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API.
    Serve(ServeArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage registered workers.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Signing keys: list them, allow users or templates, revoke.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check the configuration and exit (for systemd's ExecStartPre=).
    ValidateConfig,
    /// Print the man page (roff).
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List signing keys and who may sign with them.
    List,
    /// Let users and workflow templates sign with a key.
    Allow {
        fingerprint: String,
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        #[arg(long = "template", value_name = "NAME")]
        templates: Vec<String>,
    },
    /// Revoke a key: no further signatures (final).
    Revoke { fingerprint: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Bytes of log kept per attempt, e.g. 64MiB.
    #[arg(long)]
    pub log_cap: Option<String>,
    /// Seconds a silent worker keeps its running work.
    #[arg(long)]
    pub heartbeat_grace: Option<u64>,
    /// Seconds after which an assignment its worker does not list is given up.
    #[arg(long)]
    pub lost_assignment_after: Option<u64>,
    /// Largest JSON request body, e.g. 1MiB.
    #[arg(long)]
    pub max_json_body: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-private-key.
    #[arg(long, value_name = "PEM")]
    pub tls_certificate: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-certificate.
    #[arg(long, value_name = "PEM")]
    pub tls_private_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    User,
    Enrollment,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Name used to revoke it later (default: generated).
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a token by name.
    Revoke { name: String },
    /// List tokens (names and roles, never the tokens).
    List,
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Let a worker take work.
    Enable { name: String },
    /// Stop new work reaching a worker; its running work finishes.
    Disable { name: String },
    /// Set or unset static metadata keys (override the agent's own).
    EditMetadata {
        name: String,
        /// KEY=VALUE; VALUE is read as JSON when it parses, else as a string.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// List workers.
    List,
}
