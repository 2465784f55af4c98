//! What flipside's test suites share instead of copying: HTTP `Range` header parsing
//! ([`range`]), a file server with Range support that injects the faults a device must survive
//! ([`server`]), writers of release directories ([`release`]), the external programs the tests
//! need ([`tools`]: found or named with their package, run with their status checked), and
//! sha256 in hex.
//!
//! Test code: it panics on I/O errors instead of returning them, and is never published.

pub mod range;
pub mod release;
pub mod server;
pub mod tools;

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, in lowercase hex (as `release.json` and TUF metadata write it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of the file at `path`, in lowercase hex.
pub fn sha256_file_hex(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sha256_hex(&bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
