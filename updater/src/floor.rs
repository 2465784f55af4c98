//! The anti-rollback floor: the highest version this device ever committed, kept in the state
//! directory (`floor.json`). The running version alone is not enough: after a manual rollback,
//! or a fallback to an older proven slot, it drops, and the device would take releases older
//! than one it already trusted. Only the publisher lowers the floor, by signing a release with
//! `allow_rollback` (`flipside-build repo add --allow-rollback`); no device flag does.
//!
//! Pure rules; the state directory keeps the value ([`crate::record::StateDir::floor`]).

use serde::{Deserialize, Serialize};

/// The stored floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// No release below this version is installed unless its publisher allows the rollback.
    pub version: u64,
}

/// Whether a release of version `offered` may be installed over `floor` (none stored yet: the
/// running version is the only bound, checked by [`crate::select::choose`]).
pub fn admits(floor: Option<Floor>, offered: u64, allow_rollback: bool) -> bool {
    allow_rollback || floor.is_none_or(|f| offered >= f.version)
}

/// The floor once the release `committed` has been committed: raised to it, or set to it when
/// its publisher allowed a rollback (the one way the floor goes down).
pub fn after_commit(floor: Option<Floor>, committed: u64, allow_rollback: bool) -> Floor {
    let version = match floor {
        Some(f) if !allow_rollback => f.version.max(committed),
        _ => committed,
    };
    Floor { version }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(version: u64) -> Option<Floor> {
        Some(Floor { version })
    }

    #[test]
    fn admits_exhaustively() {
        for offered in 0..6 {
            for allow in [false, true] {
                assert!(admits(None, offered, allow));
                for floor in 0..6 {
                    assert_eq!(
                        admits(f(floor), offered, allow),
                        allow || offered >= floor,
                        "offered {offered} floor {floor} allow {allow}"
                    );
                }
            }
        }
    }

    #[test]
    fn rises_on_commit_and_drops_only_when_the_publisher_allows_it() {
        for committed in 0..6 {
            assert_eq!(after_commit(None, committed, false).version, committed);
            assert_eq!(after_commit(None, committed, true).version, committed);
            for floor in 0..6 {
                assert_eq!(
                    after_commit(f(floor), committed, false).version,
                    floor.max(committed)
                );
                assert_eq!(after_commit(f(floor), committed, true).version, committed);
            }
        }
    }
}
