//! kiln-agent: the heavy part of Kiln. It advertises its host, keeps a cache
//! of environment images, runs each task isolated under its own supervisor
//! process (a *shim*), streams logs and uploads results.

pub mod cgroup;
pub mod cli;
pub mod config;
pub mod fingerprint;
pub mod image_cache;
pub mod sandbox;
pub mod session;
pub mod supervisor;
