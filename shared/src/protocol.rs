//! Protocol-level constants and the envelope types every endpoint shares.

use serde::{Deserialize, Serialize};

/// Header an agent sends with every request (DESIGN §7).
pub const PROTOCOL_HEADER: &str = "Kiln-Protocol";
/// The only protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Body of every error reply: `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// One page of a list: `{"items": [...], "next": cursor|null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// `GET /api/1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}
