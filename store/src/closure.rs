//! One closure model for both sources: a [`StorePath`] (where it lives in the image and on the
//! host, its content hash and references) and a [`Closure`], a sorted set of store paths that
//! holds every path any of them references.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use flipside_contract::release::ClosureEntry;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One store path, from the built-in store or from Nix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StorePath {
    /// Absolute path inside the image: `/nix/store/<hash>-<name>` or
    /// `/flipside/store/<hash>-<name>`.
    pub path: String,
    /// Where its files are on the build host.
    pub source: PathBuf,
    /// `sha256:<hex>` of its NAR serialisation (for Nix paths: Nix's `narHash`).
    pub hash: String,
    /// Store paths it references, sorted; a Nix path may reference itself.
    pub references: Vec<String>,
}

impl StorePath {
    /// The store directory the path lies in (`/nix/store`, `/flipside/store`).
    pub fn store_dir(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        self.path
            .rsplit_once('/')
            .map_or(&self.path, |(_, base)| base)
    }

    /// The entry release.json records for this path.
    pub fn entry(&self) -> ClosureEntry {
        ClosureEntry {
            path: self.path.clone(),
            hash: self.hash.clone(),
            references: self.references.clone(),
        }
    }
}

/// A complete set of store paths, sorted by path: every reference of a member is a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Closure {
    paths: Vec<StorePath>,
}

impl Closure {
    /// The closure of `roots`: the roots and everything they reference, directly or not.
    ///
    /// `lookup` returns a store path's record or `None` if the source has no such path. A root
    /// it does not know is [`Error::NotInStore`]; a missing reference is
    /// [`Error::DanglingReference`], naming the path that holds it.
    pub fn compute<F>(roots: &[String], mut lookup: F) -> Result<Closure>
    where
        F: FnMut(&str) -> Result<Option<StorePath>>,
    {
        let mut found: BTreeMap<String, StorePath> = BTreeMap::new();
        // (path, the path that references it; None for a root)
        let mut pending: Vec<(String, Option<String>)> =
            roots.iter().rev().map(|r| (r.clone(), None)).collect();
        while let Some((path, referrer)) = pending.pop() {
            if found.contains_key(&path) {
                continue;
            }
            let Some(record) = lookup(&path)? else {
                return Err(match referrer {
                    None => Error::NotInStore { path },
                    Some(referrer) => Error::DanglingReference {
                        path: referrer,
                        reference: path,
                    },
                });
            };
            for reference in &record.references {
                if !found.contains_key(reference) && *reference != path {
                    pending.push((reference.clone(), Some(path.clone())));
                }
            }
            found.insert(path, record);
        }
        Ok(Closure {
            paths: found.into_values().collect(),
        })
    }

    /// Takes a set of paths that is already meant to be a closure (a Nix `closureInfo`, a
    /// `path-info --recursive` listing) and checks that it is complete.
    pub fn from_complete(paths: Vec<StorePath>) -> Result<Closure> {
        let mut by_path = BTreeMap::new();
        for p in paths {
            by_path.insert(p.path.clone(), p);
        }
        for p in by_path.values() {
            if let Some(missing) = p.references.iter().find(|r| !by_path.contains_key(*r)) {
                return Err(Error::DanglingReference {
                    path: p.path.clone(),
                    reference: missing.clone(),
                });
            }
        }
        Ok(Closure {
            paths: by_path.into_values().collect(),
        })
    }

    /// The union of two closures (each complete, so the union is).
    pub fn merge(self, other: Closure) -> Closure {
        let mut by_path: BTreeMap<String, StorePath> = BTreeMap::new();
        for p in self.paths.into_iter().chain(other.paths) {
            by_path.insert(p.path.clone(), p);
        }
        Closure {
            paths: by_path.into_values().collect(),
        }
    }

    /// The members, sorted by path.
    pub fn paths(&self) -> &[StorePath] {
        &self.paths
    }

    pub fn into_paths(self) -> Vec<StorePath> {
        self.paths
    }

    pub fn get(&self, path: &str) -> Option<&StorePath> {
        self.paths
            .binary_search_by(|p| p.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.paths[i])
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The closure as release.json records it, sorted by path.
    pub fn entries(&self) -> Vec<ClosureEntry> {
        self.paths.iter().map(StorePath::entry).collect()
    }

    /// Paths no other member references (what the closure was computed from, give or take
    /// roots that other roots reference).
    pub fn tops(&self) -> Vec<&str> {
        let referenced: BTreeSet<&str> = self
            .paths
            .iter()
            .flat_map(|p| {
                p.references
                    .iter()
                    .filter(move |r| **r != p.path)
                    .map(String::as_str)
            })
            .collect();
        self.paths
            .iter()
            .map(|p| p.path.as_str())
            .filter(|p| !referenced.contains(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(path: &str, refs: &[&str]) -> StorePath {
        StorePath {
            path: path.to_string(),
            source: PathBuf::from(path),
            hash: format!("sha256:{}", "0".repeat(64)),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn universe() -> BTreeMap<String, StorePath> {
        [
            sp("/s/a", &["/s/b", "/s/c"]),
            sp("/s/b", &["/s/b", "/s/d"]),
            sp("/s/c", &["/s/d"]),
            sp("/s/d", &[]),
            sp("/s/e", &["/s/a"]),
            sp("/s/x", &["/s/missing"]),
        ]
        .into_iter()
        .map(|p| (p.path.clone(), p))
        .collect()
    }

    fn closure_of(roots: &[&str]) -> Result<Closure> {
        let u = universe();
        let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
        Closure::compute(&roots, |p| Ok(u.get(p).cloned()))
    }

    fn names(c: &Closure) -> Vec<&str> {
        c.paths().iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn closure_follows_references_transitively_and_is_sorted() {
        let c = closure_of(&["/s/a"]).unwrap();
        assert_eq!(names(&c), ["/s/a", "/s/b", "/s/c", "/s/d"]);
        assert_eq!(c.tops(), ["/s/a"]);
        assert_eq!(names(&closure_of(&["/s/d"]).unwrap()), ["/s/d"]);
        let both = closure_of(&["/s/e", "/s/c"]).unwrap();
        assert_eq!(names(&both), ["/s/a", "/s/b", "/s/c", "/s/d", "/s/e"]);
        assert_eq!(both.get("/s/c").unwrap().references, ["/s/d"]);
        assert!(both.get("/s/x").is_none());
        assert_eq!(closure_of(&[]).unwrap(), Closure::default());
    }

    #[test]
    fn dangling_references_and_unknown_roots_are_named() {
        match closure_of(&["/s/x"]) {
            Err(Error::DanglingReference { path, reference }) => {
                assert_eq!((path.as_str(), reference.as_str()), ("/s/x", "/s/missing"));
            }
            other => panic!("{other:?}"),
        }
        match closure_of(&["/s/a", "/s/nope"]) {
            Err(Error::NotInStore { path }) => assert_eq!(path, "/s/nope"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn from_complete_checks_completeness() {
        let u = universe();
        let a = closure_of(&["/s/a"]).unwrap();
        assert_eq!(Closure::from_complete(a.clone().into_paths()).unwrap(), a);
        let incomplete = vec![u["/s/a"].clone(), u["/s/b"].clone()];
        assert!(matches!(
            Closure::from_complete(incomplete),
            Err(Error::DanglingReference { .. })
        ));
    }

    #[test]
    fn merge_is_a_sorted_union() {
        let m = closure_of(&["/s/c"])
            .unwrap()
            .merge(closure_of(&["/s/b"]).unwrap());
        assert_eq!(names(&m), ["/s/b", "/s/c", "/s/d"]);
        assert_eq!(m.entries().len(), 3);
    }

    #[test]
    fn names_of_a_store_path() {
        let p = sp("/nix/store/abc-x", &[]);
        assert_eq!((p.store_dir(), p.base_name()), ("/nix/store", "abc-x"));
    }
}
