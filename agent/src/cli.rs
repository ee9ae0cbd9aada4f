//! The `kiln-agent` command line (DESIGN §8): every config key has a flag.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "kiln-agent", version, about = "Kiln agent: runs isolated build tasks on this host")]
pub struct Cli {
    /// Configuration file (default /etc/kiln/agent.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that override `agent.toml` keys.
#[derive(Debug, Args, Default)]
pub struct Overrides {
    #[arg(long, global = true)]
    pub coordinator: Option<String>,
    /// ca_certificate: CA certificates (PEM) to trust for an https:// coordinator
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_certificate: Option<PathBuf>,
    #[arg(long, global = true)]
    pub name: Option<String>,
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// worker or signing
    #[arg(long, global = true)]
    pub role: Option<String>,
    #[arg(long, global = true)]
    pub concurrency: Option<u32>,
    #[arg(long, global = true)]
    pub allow_network: Option<bool>,
    #[arg(long, global = true)]
    pub default_timeout: Option<u64>,
    /// Comma-separated executables to advertise.
    #[arg(long, global = true, value_delimiter = ',')]
    pub executables: Option<Vec<String>>,
    #[arg(long, global = true, env = "KILN_ENROLLMENT_TOKEN")]
    pub enrollment_token: Option<String>,
    /// image_cache.max_images
    #[arg(long, global = true)]
    pub max_images: Option<usize>,
    /// image_cache.min_free_disk, e.g. 10GiB
    #[arg(long, global = true)]
    pub min_free_disk: Option<String>,
    /// backends.enabled, comma-separated
    #[arg(long, global = true, value_delimiter = ',')]
    pub backends: Option<Vec<String>>,
    /// limits.memory, e.g. 4GiB
    #[arg(long, global = true)]
    pub memory_limit: Option<String>,
    /// limits.pids
    #[arg(long, global = true)]
    pub pids_limit: Option<u64>,
    /// limits.cpus
    #[arg(long, global = true)]
    pub cpus: Option<f64>,
    /// limits.disk, e.g. 20GiB
    #[arg(long, global = true)]
    pub disk_limit: Option<String>,
    /// limits.tmp, e.g. 1GiB
    #[arg(long, global = true)]
    pub tmp_limit: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Check the configuration and exit (for systemd's ExecStartPre=).
    ValidateConfig,
    /// Take no new work; running tasks finish (`--cancel` resumes).
    Drain {
        #[arg(long)]
        cancel: bool,
    },
    /// Print this host's metadata as the agent would publish it.
    Fingerprint,
    /// Print the man page (roff).
    Manpage,
    /// Supervise one task (started by the agent itself).
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        task_dir: PathBuf,
    },
    /// Try a backend for real; exit 0 when it works.
    #[command(hide = true)]
    ProbeBackend {
        backend: String,
        /// Skip trial containers and VMs: only what can change between full probes.
        #[arg(long)]
        quick: bool,
        /// qemu: boot this stored system image under KVM, print the verdict.
        #[arg(long)]
        image: Option<PathBuf>,
    },
    /// Environment images (docs/system-image.md).
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Turn a system tarball into a bootable `kiln:system-image` directory
    /// (disk.qcow2, vmlinuz, initrd.img, image.json) for qemu.
    Build {
        /// The root filesystem tarball (a `kiln:system-tarball`).
        #[arg(long)]
        tarball: PathBuf,
        /// Debian kernel package(s) to install into it, e.g. from
        /// `apt-get download linux-image-cloud-amd64`'s dependency; not
        /// needed when the tarball already has /boot/vmlinuz-*.
        #[arg(long = "kernel-deb")]
        kernel_debs: Vec<PathBuf>,
        /// Directory to write the image's files into.
        #[arg(long)]
        output: PathBuf,
        /// A static busybox for the initramfs (busybox-static).
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Debian architecture of the image.
        #[arg(long, default_value = "amd64")]
        architecture: String,
        /// Virtual size of the disk, e.g. 8GiB (default: room for the tree and then some).
        #[arg(long)]
        disk_size: Option<String>,
    },
}
