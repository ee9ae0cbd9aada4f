//! Task supervision: the task directory contract, its log file, the per-task
//! shim process, and (daemon side) the dispatcher that starts shims and ships
//! what they write.

pub mod detach;
pub mod journal;
pub mod logfile;
pub mod process;
pub mod shim;
pub mod task_dir;
