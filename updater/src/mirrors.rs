//! The mirrors of one repository and the one rule for moving between them, shared by metadata
//! (the TUF transport and the refresh) and bundle fetching (the install's Range requests).
//!
//! The rule ([`Failover`]): mirrors are asked in the configured order; after a failure the next
//! one is asked, wrapping around; a mirror that failed in a way another try cannot fix (a
//! permanent HTTP status, data that does not verify) is excluded and never asked again in this
//! run. Whether to exclude, and how many tries a caller allows, is the caller's: metadata gives
//! each mirror one try, a bundle range retries transient failures under the network policy.

use std::collections::BTreeSet;

use crate::config::{Location, Mirror};

/// The mirrors of one repository, in the configured order (never empty when built from a
/// validated configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorSet {
    mirrors: Vec<Mirror>,
}

impl MirrorSet {
    pub fn new(mirrors: Vec<Mirror>) -> MirrorSet {
        MirrorSet { mirrors }
    }

    pub fn len(&self) -> usize {
        self.mirrors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mirrors.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Mirror> {
        self.mirrors.get(i)
    }

    /// The same mirrors, asked first from `first` on (wrapping around).
    pub fn starting_at(&self, first: usize) -> MirrorSet {
        let first = first.min(self.mirrors.len());
        let mut mirrors = self.mirrors[first..].to_vec();
        mirrors.extend_from_slice(&self.mirrors[..first]);
        MirrorSet { mirrors }
    }

    /// Where a repository file is on each mirror, in order.
    pub fn join(&self, relative: &str) -> Vec<Location> {
        self.mirrors.iter().map(|m| m.join(relative)).collect()
    }

    /// A failover cursor over these mirrors, at the first.
    pub fn failover(&self) -> Failover {
        Failover::new(self.mirrors.len())
    }
}

/// Which of `len` mirrors to ask next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    len: usize,
    current: usize,
    excluded: BTreeSet<usize>,
}

impl Failover {
    pub fn new(len: usize) -> Failover {
        Failover {
            len,
            current: 0,
            excluded: BTreeSet::new(),
        }
    }

    /// The mirror to ask now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current mirror failed; with `exclude` it is never asked again. Moves to the next
    /// mirror still allowed, in order and wrapping around (the same one again when it is the
    /// only one left); `None` when every mirror is excluded.
    pub fn failed(&mut self, exclude: bool) -> Option<usize> {
        if exclude {
            self.excluded.insert(self.current);
        }
        let next = (1..=self.len)
            .map(|k| (self.current + k) % self.len)
            .find(|m| !self.excluded.contains(m))?;
        self.current = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn transient_failures_rotate_and_exclusions_stick() {
        let mut f = Failover::new(3);
        assert_eq!(f.current(), 0);
        assert_eq!(f.failed(false), Some(1));
        assert_eq!(f.failed(true), Some(2), "1 is out for good");
        assert_eq!(f.failed(false), Some(0));
        assert_eq!(f.failed(false), Some(2), "1 is skipped");
        assert_eq!(f.failed(true), Some(0));
        assert_eq!(f.failed(false), Some(0), "the last one left is asked again");
        assert_eq!(f.failed(true), None);
    }

    #[test]
    fn one_try_each_is_every_failure_excluded() {
        let mut f = Failover::new(3);
        let order: Vec<usize> = std::iter::once(0)
            .chain(std::iter::from_fn(|| f.failed(true)))
            .collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(Failover::new(0).failed(false), None);
    }

    #[test]
    fn starting_at_rotates_and_join_keeps_the_order() {
        let dirs = ["/m0", "/m1", "/m2"].map(|d| Mirror::Dir(PathBuf::from(d)));
        let set = MirrorSet::new(dirs.to_vec());
        assert_eq!(
            set.starting_at(1).mirrors,
            [&dirs[1..], &dirs[..1]].concat()
        );
        assert_eq!(set.starting_at(9).mirrors, dirs.to_vec());
        let joined: Vec<String> = set
            .join("targets/x")
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(joined, ["/m0/targets/x", "/m1/targets/x", "/m2/targets/x"]);
    }
}
