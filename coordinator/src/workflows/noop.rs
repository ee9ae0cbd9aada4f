//! The `noop` workflow: takes `{}` and creates no children, so it completes
//! as soon as it is populated, unless children were added to it by hand
//! while it waited (they then decide how it ends).

use super::{Orchestrator, WorkflowContext, WorkflowError};
use serde_json::{Map, Value};

pub struct Noop;

impl Orchestrator for Noop {
    fn validate(&self, data: &Map<String, Value>) -> Result<(), WorkflowError> {
        match data.keys().next() {
            None => Ok(()),
            Some(key) => Err(WorkflowError::invalid(
                key.clone(),
                format!("task_data.{key} is not a known key: the noop workflow takes {{}}"),
            )),
        }
    }

    fn populate(&self, _ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError> {
        Ok(())
    }
}
