//! Where things are in a repository directory (pure names; no I/O).
//!
//! ```text
//! REPO/
//!   metadata/1.root.json ... N.root.json   every root version, kept for clients' root chain
//!   metadata/root.json                     copy of the newest root, for bootstrapping by hand
//!   metadata/V.targets.json                every targets version (consistent snapshots)
//!   metadata/V.snapshot.json               every snapshot version
//!   metadata/timestamp.json                the one unversioned file, written last
//!   targets/<sha256>.<name>                target files, named as consistent-snapshot clients fetch them
//!   flipside-repository.json               publisher settings (expiry periods); not TUF metadata
//!   flipside-published.json                time of the last publish (a lower bound of the clock)
//!   .flipside-repository.lock              flock(2) lock held by a publishing command
//! ```

use flipside_tuf::Role;

pub const METADATA_DIR: &str = "metadata";
pub const TARGETS_DIR: &str = "targets";
pub const SETTINGS_FILE: &str = "flipside-repository.json";
pub const PUBLISHED_FILE: &str = "flipside-published.json";
pub const LOCK_FILE: &str = ".flipside-repository.lock";
pub const TIMESTAMP_FILE: &str = "timestamp.json";
pub const ROOT_COPY_FILE: &str = "root.json";

/// `{version}.{role}.json`, the name consistent-snapshot clients fetch.
pub fn versioned(role: Role, version: u64) -> String {
    format!("{version}.{role}.json")
}

/// `{sha256}.{name}`, the file name of a target in `targets/`.
pub fn target_file(sha256_hex: &str, name: &str) -> String {
    format!("{sha256_hex}.{name}")
}

/// Prefix of files being written; never a valid metadata or target file name.
pub const TEMP_PREFIX: &str = ".tmp-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(versioned(Role::Root, 3), "3.root.json");
        assert_eq!(versioned(Role::Snapshot, 12), "12.snapshot.json");
        assert_eq!(target_file("ab", "kiosk-1.bundle"), "ab.kiosk-1.bundle");
    }
}
