//! End-to-end tests of the `kiln` command line against a real coordinator:
//! every verb, the exit codes of DESIGN §8, where the server and token come
//! from, and the one-line errors.

mod artifacts;
mod config_and_errors;
mod docs_and_metrics;
mod logs_and_workers;
mod support;
mod work;
mod workflows;
