//! Wire types shared by every Kiln component: the REST v1 contract's JSON
//! shapes, status enums with their transition guards, exit codes and the typed
//! API client. No server code and no SQL live here.

pub mod artifact;
pub mod client;
pub mod deb822;
pub mod exit;
pub mod protocol;
pub mod size;
pub mod status;
pub mod systemd;
pub mod work;
pub mod worker;
pub mod workflow;

pub use protocol::{ErrorBody, Page, PROTOCOL_HEADER, PROTOCOL_VERSION};
pub use status::{TaskType, WorkResult, WorkStatus, WorkerRole};
