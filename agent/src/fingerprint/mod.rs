//! Host fingerprint: see the fingerprint helper.
