//! Task supervision: the task directory contract, its log file, the per-task
//! shim process, and (daemon side) the dispatcher that starts shims and ships
//! what they write.

pub mod logfile;
pub mod shim;
pub mod task_dir;
