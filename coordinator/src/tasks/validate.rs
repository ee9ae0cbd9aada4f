//! Typed access to `task_data` fields with errors that name the key.

use super::TaskError;
use serde_json::{Map, Value};

pub(super) struct Fields<'a> {
    data: &'a Map<String, Value>,
}

fn invalid(key: &str, what: &str) -> TaskError {
    TaskError::new("invalid-task-data", format!("task_data.{key} must be {what}"))
}

impl<'a> Fields<'a> {
    /// Refuse keys outside `allowed`.
    pub fn new(data: &'a Map<String, Value>, allowed: &[&str]) -> Result<Self, TaskError> {
        if let Some(key) = data.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(TaskError::new(
                "invalid-task-data",
                format!("task_data.{key} is not a known key (known: {})", allowed.join(", ")),
            ));
        }
        Ok(Fields { data })
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.data.get(key).filter(|v| !v.is_null())
    }

    pub fn string(&self, key: &str) -> Result<Option<&'a str>, TaskError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| invalid(key, "a string"))).transpose()
    }

    pub fn required_string(&self, key: &str) -> Result<&'a str, TaskError> {
        self.string(key)?.ok_or_else(|| invalid(key, "given (a string)"))
    }

    pub fn required_id(&self, key: &str) -> Result<i64, TaskError> {
        self.get(key)
            .ok_or_else(|| invalid(key, "given (an artifact id)"))?
            .as_i64()
            .filter(|id| *id > 0)
            .ok_or_else(|| invalid(key, "an artifact id (a positive integer)"))
    }

    pub fn positive_int(&self, key: &str) -> Result<Option<u64>, TaskError> {
        self.get(key).map(|v| v.as_u64().ok_or_else(|| invalid(key, "a non-negative integer"))).transpose()
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, TaskError> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| invalid(key, "true or false"))).transpose()
    }

    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, TaskError> {
        self.get(key)
            .map(|v| {
                v.as_array()
                    .and_then(|items| items.iter().map(|i| i.as_str().map(str::to_owned)).collect())
                    .ok_or_else(|| invalid(key, "a list of strings"))
            })
            .transpose()
    }

    pub fn string_map(&self, key: &str) -> Result<(), TaskError> {
        match self.get(key) {
            None => Ok(()),
            Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
            Some(_) => Err(invalid(key, "a mapping of strings to strings")),
        }
    }
}
