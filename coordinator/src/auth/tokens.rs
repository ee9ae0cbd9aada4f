//! Token generation and hashing. Tokens carry 256 bits of randomness, so a
//! plain SHA-256 is enough to store them: there is nothing to brute-force.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random token: 64 hex characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored and looked up instead of the token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Shortest token a worker may register with (128 bits in hex).
pub const MIN_WORKER_TOKEN_LEN: usize = 32;

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (super::generate(), super::generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(super::hash(&a), super::hash(&a));
        assert_ne!(super::hash(&a), a);
    }
}
