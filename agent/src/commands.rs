//! The agent's subcommands, each a short function.

use crate::cli::{Cli, Command, ImageCommand, Overrides};
use crate::config::{AgentConfig, Role, DEFAULT_CONFIG_PATH};
use anyhow::Context as _;
use kiln_shared::size::parse_size;
use std::path::Path;

/// The file (explicit, else the default path when present), then the flags.
pub fn load_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let mut config = match &cli.config {
        Some(path) => AgentConfig::load(path)?,
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => AgentConfig::load(Path::new(DEFAULT_CONFIG_PATH))?,
        None => AgentConfig::default(),
    };
    apply(&mut config, &cli.overrides)?;
    Ok(config)
}

fn size(flag: &str, text: &str) -> anyhow::Result<u64> {
    parse_size(text).map_err(anyhow::Error::msg).with_context(|| format!("--{flag}"))
}

fn apply(c: &mut AgentConfig, o: &Overrides) -> anyhow::Result<()> {
    if let Some(v) = &o.coordinator {
        c.coordinator = v.clone();
    }
    if let Some(v) = &o.ca_certificate {
        c.ca_certificate = Some(v.clone());
    }
    if let Some(v) = &o.name {
        c.name = Some(v.clone());
    }
    if let Some(v) = &o.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = &o.role {
        c.role = match v.as_str() {
            "worker" => Role::Worker,
            "signing" => Role::Signing,
            other => anyhow::bail!("--role must be worker or signing, not {other:?}"),
        };
    }
    if let Some(v) = o.concurrency {
        c.concurrency = v;
    }
    if let Some(v) = o.allow_network {
        c.allow_network = v;
    }
    if let Some(v) = o.default_timeout {
        c.default_timeout = v;
    }
    if let Some(v) = &o.executables {
        c.executables = v.clone();
    }
    if let Some(v) = &o.enrollment_token {
        c.enrollment_token = Some(v.clone());
    }
    if let Some(v) = o.max_images {
        c.image_cache.max_images = v;
    }
    if let Some(v) = &o.min_free_disk {
        c.image_cache.min_free_disk = size("min-free-disk", v)?;
    }
    if let Some(v) = &o.backends {
        c.backends.enabled = v.clone();
    }
    if let Some(v) = &o.memory_limit {
        c.limits.memory = size("memory-limit", v)?;
    }
    if let Some(v) = o.pids_limit {
        c.limits.pids = v;
    }
    if let Some(v) = o.cpus {
        c.limits.cpus = v;
    }
    if let Some(v) = &o.disk_limit {
        c.limits.disk = size("disk-limit", v)?;
    }
    if let Some(v) = &o.tmp_limit {
        c.limits.tmp = size("tmp-limit", v)?;
    }
    Ok(())
}

/// Run a parsed command line; the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Some(Command::Shim { task_dir }) => return Ok(crate::supervisor::shim::main(task_dir)),
        Some(Command::ProbeBackend { backend, quick, image }) => {
            return crate::probe::run(backend, *quick, image.as_deref())
        }
        Some(Command::Manpage) => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            page.render(&mut std::io::stdout()).context("failed to write the man page")?;
            return Ok(0);
        }
        Some(Command::Image(ImageCommand::Build {
            tarball,
            kernel_debs,
            output,
            busybox,
            architecture,
            disk_size,
        })) => {
            let options = crate::backends::qemu::build::BuildOptions {
                tarball: tarball.clone(),
                kernel_debs: kernel_debs.clone(),
                output: output.clone(),
                busybox: busybox.clone(),
                architecture: architecture.clone(),
                disk_size: disk_size.as_deref().map(|s| size("disk-size", s)).transpose()?.unwrap_or(0),
            };
            let manifest = crate::backends::qemu::build::build(&options)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            return Ok(0);
        }
        _ => {}
    }
    let config = load_config(&cli)?;
    match cli.command {
        Some(Command::ValidateConfig) => {
            config.validate()?;
            if let Some(warning) = config.cleartext_warning() {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration is valid");
            Ok(0)
        }
        Some(Command::Drain { cancel }) => {
            let marker = config.data_dir.join("drain");
            if cancel {
                match std::fs::remove_file(&marker) {
                    Ok(()) => eprintln!("drain cancelled: the agent takes work again"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("the agent was not draining"),
                    Err(e) => return Err(e).with_context(|| format!("failed to remove {}", marker.display())),
                }
            } else {
                std::fs::write(&marker, b"").with_context(|| format!("failed to create {}", marker.display()))?;
                eprintln!(
                    "draining: the agent takes no new work; running tasks finish (kiln-agent drain --cancel resumes)"
                );
            }
            Ok(0)
        }
        Some(Command::Fingerprint) => {
            let exe = std::env::current_exe().context("failed to find this executable")?;
            let md = crate::fingerprint::probe(&crate::fingerprint::ProbeInput::for_host(&config, exe.clone()));
            println!("{}", serde_json::to_string_pretty(&md)?);
            Ok(0)
        }
        Some(Command::Run) | None => {
            config.validate()?;
            let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
            runtime.block_on(crate::run(config))?;
            Ok(0)
        }
        Some(Command::Shim { .. } | Command::ProbeBackend { .. } | Command::Image(_) | Command::Manpage) => Ok(0),
    }
}
