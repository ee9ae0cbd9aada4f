//! End-to-end tests for Kiln: see tests/.
