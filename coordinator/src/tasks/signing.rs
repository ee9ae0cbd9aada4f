//! Signing tasks (DESIGN §2, issue 8): `generate_key`, `sign` and `debsign`
//! run only on agents with role `signing`, which hold the private keys. The
//! coordinator validates their `task_data` and derives requirements that no
//! worker agent can meet.

use super::validate::Fields;
use super::{TaskError, Validated};
use crate::scheduler::requirements::Requirements;
use kiln_shared::WorkerRole;
use serde_json::{Map, Value};

/// Version of each signing task, as signing agents advertise it.
pub const VERSION: u32 = 1;

/// Key purposes `generate_key` accepts.
pub const PURPOSES: &[&str] = &["openpgp"];

/// Validate a signing task's `task_data`; the requirements name role
/// `signing`, so worker agents never match them.
pub fn validate(name: &str, data: &Map<String, Value>) -> Result<Validated, TaskError> {
    match name {
        "generate_key" => {
            let f = Fields::new(data, &["purpose", "description"])?;
            let purpose = f.required_string("purpose")?;
            if !PURPOSES.contains(&purpose) {
                return Err(TaskError::new(
                    "invalid-task-data",
                    format!("task_data.purpose must be one of {PURPOSES:?}, not {purpose:?}"),
                ));
            }
            f.string("description")?;
        }
        _ => {
            let f = Fields::new(data, &["key", "unsigned"])?;
            let key = f.required_string("key")?;
            if !is_fingerprint(key) {
                return Err(TaskError::new("invalid-task-data", "task_data.key must be a key fingerprint (hex)"));
            }
            f.required_id("unsigned")?;
        }
    }
    let req = Requirements::new(WorkerRole::Signing, name, VERSION);
    Ok(Validated { requirements: Some(req), environment: None })
}

/// An OpenPGP fingerprint as gpg prints it: 40 (v4) or 64 (v5) hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn signing_tasks_need_a_signing_agent() {
        let v =
            validate("generate_key", &data(json!({"purpose": "openpgp", "description": "archive"}))).expect("valid");
        assert_eq!(v.requirements.expect("requirements").role, WorkerRole::Signing);
        let fpr = "0123456789ABCDEF0123456789ABCDEF01234567";
        let v = validate("sign", &data(json!({"key": fpr, "unsigned": 3}))).expect("valid");
        assert_eq!(v.requirements.expect("requirements").task_name, "sign");
    }

    #[test]
    fn refuses_bad_signing_data() {
        for (name, d) in [
            ("generate_key", json!({"purpose": "x509"})),
            ("generate_key", json!({"description": "no purpose"})),
            ("sign", json!({"key": "nothex", "unsigned": 1})),
            ("sign", json!({"key": "0123456789ABCDEF0123456789ABCDEF01234567"})),
            ("debsign", json!({"key": "0123456789ABCDEF0123456789ABCDEF01234567", "unsigned": 1, "x": 1})),
        ] {
            assert!(validate(name, &data(d.clone())).is_err(), "{name} {d}");
        }
    }
}
