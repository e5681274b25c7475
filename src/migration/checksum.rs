//! Checksums of migration files: a file that already ran must never change.

use sha2::{Digest, Sha256};

/// SHA-256 of the file's bytes, as 64 lower-case hex digits. Every byte counts: a changed
/// comment or line ending is a change (the file that ran is the record of what ran).
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A migration whose file differs from the one that ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "migration {name} has changed since it ran: it ran with checksum {recorded}, the file now has \
     {current}; a migration that ran must not be edited (restore the file, or write a new \
     migration for the new change)"
)]
pub struct ChecksumMismatch {
    pub name: String,
    pub recorded: String,
    pub current: String,
}

/// Compares the checksum recorded when `name` ran with the file's current one.
pub fn verify(name: &str, recorded: &str, current: &str) -> Result<(), ChecksumMismatch> {
    if recorded.eq_ignore_ascii_case(current) {
        Ok(())
    } else {
        Err(ChecksumMismatch {
            name: name.to_string(),
            recorded: recorded.to_string(),
            current: current.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_mismatch_names_both_checksums() {
        assert!(verify("0001_a", "ABC", "abc").is_ok());
        let message = verify("0001_a", "aaa", "bbb")
            .expect_err("differs")
            .to_string();
        assert!(message.contains("0001_a"), "{message}");
        assert!(
            message.contains("aaa") && message.contains("bbb"),
            "{message}"
        );
    }
}
