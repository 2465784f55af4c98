//! The built-in store, for teams without Nix: content-addressed directories whose paths appear
//! inside images under `/flipside/store/<hash>-<name>`.
//!
//! Layout of a store directory `<dir>`:
//!
//! ```text
//! <dir>/.flipside-store              marker: "flipside store format 1"
//! <dir>/<hash>-<name>/               the path's files (files 0444/0555, directories 0755)
//! <dir>/.meta/<hash>-<name>.json     its record: path, name, NAR hash and size, references
//! <dir>/.tmp/                        imports in progress (same filesystem, for the rename)
//! ```
//!
//! A path is in the store when its record exists; the record is written last, so an import
//! cut short leaves at most a tree without a record, which the next import of the same content
//! checks and adopts. `.tmp` may be emptied whenever no import runs.
//!
//! The hash is [`path_hash`]: sha256 over the NAR of the tree, the name and the sorted
//! references, cut to 160 bits and written in Nix base-32. A path's name thus changes whenever
//! anything in its dependency tree changes. The NAR holds every symlink's target bytes, so a
//! changed target (`/dev/null` or `/dev/zero`, absolute or relative) is another path. References
//! are found by scanning the NAR for the hash part of every path already in the store (see
//! [`crate::scan`]), plus explicit ones.
//!
//! A source directory may be a whole root tree (Debian's packages unpacked with `dpkg -x`): its
//! absolute symlinks are kept as they are and mean the image's paths (the rule is in
//! [`crate::path`]); nothing on the build host is followed through them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::closure::{Closure, StorePath};
use crate::path::{parse_base_name, split_store_path, BUILTIN_STORE_DIR};
use crate::scan::RefScanner;
use crate::tree::{walk, CopyMode, Rules};
use crate::{base32, Error, Result};

/// File that marks a directory as a built-in store.
pub const MARKER: &str = ".flipside-store";
const MARKER_TEXT: &str = "flipside store format 1\n";
const META_DIR: &str = ".meta";
const TMP_DIR: &str = ".tmp";
const META_FORMAT: u32 = 1;

/// Bytes of the sha256 kept in a store path's hash part.
const PATH_HASH_BYTES: usize = 20;

/// The record kept beside each path in `.meta/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    format: u32,
    /// `/flipside/store/<hash>-<name>`.
    path: String,
    name: String,
    /// `sha256:<hex>` of the NAR.
    hash: String,
    nar_size: u64,
    /// Sorted logical paths.
    references: Vec<String>,
}

/// The hash part of a built-in store path: covers the content (its NAR hash), the name, and
/// the references (whose own names cover their content and references in turn).
pub fn path_hash(name: &str, nar_hash: &str, references: &[String]) -> String {
    let mut sha = Sha256::new();
    sha.update(b"flipside-store-path:1\0");
    sha.update(name.as_bytes());
    sha.update(b"\0");
    sha.update(nar_hash.as_bytes());
    sha.update(b"\0");
    let mut refs: Vec<&String> = references.iter().collect();
    refs.sort();
    for r in refs {
        sha.update(r.as_bytes());
        sha.update(b"\0");
    }
    base32::encode(&sha.finalize()[..PATH_HASH_BYTES])
}

/// A built-in store on the build host.
#[derive(Debug, Clone)]
pub struct BuiltinStore {
    dir: PathBuf,
    /// `dir` with symlinks resolved, to recognise host paths given in another spelling.
    canonical: PathBuf,
}

impl BuiltinStore {
    /// Opens the store at `dir`, creating it if it does not exist. A non-empty directory that
    /// is not a store is refused, so a mistyped `--store` cannot litter another directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        match fs::read_dir(&dir) {
            Ok(mut entries) => {
                if !dir.join(MARKER).exists() && entries.next().is_some() {
                    return Err(Error::NotAStore { dir });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
            }
            Err(e) => return Err(read_error(&dir, e)),
        }
        for sub in [META_DIR, TMP_DIR] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| write_error(&p, e))?;
        }
        let marker = dir.join(MARKER);
        if !marker.exists() {
            fs::write(&marker, MARKER_TEXT).map_err(|e| write_error(&marker, e))?;
        }
        let canonical = dir.canonicalize().map_err(|e| read_error(&dir, e))?;
        Ok(BuiltinStore { dir, canonical })
    }

    /// The store directory as given to [`Self::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `<hash>-<name>` lives on the host.
    pub fn host_path(&self, base_name: &str) -> PathBuf {
        self.dir.join(base_name)
    }

    fn meta_path(&self, base_name: &str) -> PathBuf {
        self.dir.join(META_DIR).join(format!("{base_name}.json"))
    }

    /// The logical store path (`/flipside/store/<hash>-<name>`) a spec names: that form
    /// itself, or a host path in this store, with or without a sub-path (dropped). `None` if
    /// the spec is neither.
    pub fn parse_spec(&self, spec: &str) -> Option<String> {
        if let Some((name, _)) = split_store_path(spec) {
            return (name.store_dir == BUILTIN_STORE_DIR).then(|| name.path());
        }
        let path = Path::new(spec);
        self.logical_of_host(path).or_else(|| {
            // A symlink to a store path, like a build's `result` link.
            let canonical = path.canonicalize().ok()?;
            self.logical_of_host(&canonical)
        })
    }

    /// The store path a host path lies in: the ancestor whose parent is the store directory.
    fn logical_of_host(&self, path: &Path) -> Option<String> {
        path.ancestors().find_map(|a| {
            let base = a.file_name()?.to_str()?;
            parse_base_name(base)?;
            let parent = a.parent()?;
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            (parent.canonicalize().ok()? == self.canonical)
                .then(|| format!("{BUILTIN_STORE_DIR}/{base}"))
        })
    }

    /// The record of a logical store path, `None` if it is not in the store.
    pub fn lookup(&self, path: &str) -> Result<Option<StorePath>> {
        let base = match split_store_path(path) {
            Some((name, "")) if name.store_dir == BUILTIN_STORE_DIR => name.base_name(),
            _ => return Ok(None),
        };
        let meta_path = self.meta_path(&base);
        let text = match fs::read_to_string(&meta_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(&meta_path, e)),
        };
        let bad = |why: String| Error::BadMetadata {
            path: meta_path.clone(),
            why,
        };
        let meta: Meta = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if meta.format != META_FORMAT {
            return Err(bad(format!(
                "format {} is not {META_FORMAT}; use the flipside version that wrote it",
                meta.format
            )));
        }
        if meta.path != path || base != format!("{}-{}", &base[..32], meta.name) {
            return Err(bad(format!("it describes {} instead", meta.path)));
        }
        let source = self.host_path(&base);
        if fs::symlink_metadata(&source).is_err() {
            return Err(bad(format!("{} is missing", source.display())));
        }
        Ok(Some(StorePath {
            path: meta.path,
            source,
            hash: meta.hash,
            references: meta.references,
        }))
    }

    /// The store path a spec names (see [`Self::parse_spec`]); it must be in the store.
    pub fn get(&self, spec: &str) -> Result<StorePath> {
        let path = self.parse_spec(spec).ok_or_else(|| Error::NotAStorePath {
            spec: spec.to_string(),
        })?;
        self.lookup(&path)?.ok_or(Error::NotInStore { path })
    }

    /// `<hash>-<name>` of every path in the store, sorted.
    pub fn base_names(&self) -> Result<Vec<String>> {
        let meta_dir = self.dir.join(META_DIR);
        let mut names = Vec::new();
        for entry in fs::read_dir(&meta_dir).map_err(|e| read_error(&meta_dir, e))? {
            let entry = entry.map_err(|e| read_error(&meta_dir, e))?;
            let file = entry.file_name();
            if let Some(base) = file.to_str().and_then(|f| f.strip_suffix(".json")) {
                if parse_base_name(base).is_some() {
                    names.push(base.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every path in the store, sorted.
    pub fn list(&self) -> Result<Vec<StorePath>> {
        let mut paths = Vec::new();
        for base in self.base_names()? {
            let path = format!("{BUILTIN_STORE_DIR}/{base}");
            paths.extend(self.lookup(&path)?);
        }
        Ok(paths)
    }

    /// The closure of store paths given as specs (see [`Self::parse_spec`]).
    pub fn closure(&self, specs: &[String]) -> Result<Closure> {
        let roots = specs
            .iter()
            .map(|s| {
                self.parse_spec(s)
                    .ok_or_else(|| Error::NotAStorePath { spec: s.clone() })
            })
            .collect::<Result<Vec<_>>>()?;
        Closure::compute(&roots, |p| self.lookup(p))
    }

    /// Adds the directory `source` as a store path named `name`, referencing every store path
    /// whose hash part occurs in it plus `explicit_refs` (specs of paths in this store).
    ///
    /// Atomic: the tree is copied into `.tmp`, hashed as copied, and renamed into place; the
    /// record is written last. Adding the same content again returns the same path and
    /// changes nothing.
    pub fn add(&self, source: &Path, name: &str, explicit_refs: &[String]) -> Result<StorePath> {
        flipside_contract::release::check_name(name).map_err(|e| Error::InvalidName {
            name: name.to_string(),
            source: e,
        })?;
        match fs::metadata(source) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::SourceNotDirectory {
                    path: source.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::SourceMissing {
                    path: source.to_path_buf(),
                })
            }
            Err(e) => return Err(read_error(source, e)),
        }
        let mut references = BTreeSet::new();
        for spec in explicit_refs {
            let path = self
                .parse_spec(spec)
                .ok_or_else(|| Error::NotAStorePath { spec: spec.clone() })?;
            if self.lookup(&path)?.is_none() {
                return Err(Error::RefNotInStore {
                    reference: spec.clone(),
                    store: self.dir.clone(),
                });
            }
            references.insert(path);
        }
        let known: BTreeMap<String, String> = self
            .base_names()?
            .into_iter()
            .map(|base| {
                let path = format!("{BUILTIN_STORE_DIR}/{base}");
                (base, path)
            })
            .collect();
        let scanner = RefScanner::new(known.iter().map(|(base, path)| (&base[..32], path.clone())));

        let tmp_root = self.dir.join(TMP_DIR);
        let tmp = tempfile::Builder::new()
            .prefix("add-")
            .tempdir_in(&tmp_root)
            .map_err(|e| write_error(&tmp_root, e))?;
        let staged = tmp.path().join("tree");
        let rules = Rules {
            store_dir: BUILTIN_STORE_DIR,
            own: None,
        };
        // Follow a symlink given as the source, not ones inside it.
        let source = source.canonicalize().map_err(|e| read_error(source, e))?;
        let summary = walk(
            &source,
            Some((&staged, CopyMode::Store)),
            rules,
            Some(scanner),
        )?;
        if let Some((base, (link, target))) = summary
            .link_targets
            .iter()
            .find(|(base, _)| !known.contains_key(*base))
        {
            return Err(Error::SymlinkTargetMissing {
                link: link.clone(),
                target: target.clone(),
                base: base.clone(),
                store: self.dir.clone(),
            });
        }
        references.extend(summary.references);
        let references: Vec<String> = references.into_iter().collect();
        let base = format!("{}-{name}", path_hash(name, &summary.nar_hash, &references));
        let logical = format!("{BUILTIN_STORE_DIR}/{base}");
        if let Some(existing) = self.lookup(&logical)? {
            log::debug!("{logical} is already in the store");
            return Ok(existing);
        }

        let dest = self.host_path(&base);
        if let Err(e) = fs::rename(&staged, &dest) {
            if fs::symlink_metadata(&dest).is_err() {
                return Err(write_error(&dest, e));
            }
            // Left by an import cut short, or one running beside us: adopt it if it holds
            // what we would have put there.
            let rules = Rules {
                store_dir: BUILTIN_STORE_DIR,
                own: Some(&base),
            };
            let found = walk(&dest, None, rules, None)?;
            if found.nar_hash != summary.nar_hash {
                return Err(Error::Corrupt {
                    path: logical,
                    source_path: dest,
                    expected: summary.nar_hash,
                    actual: found.nar_hash,
                });
            }
        }
        sync_dir(&self.dir)?;
        let meta = Meta {
            format: META_FORMAT,
            path: logical.clone(),
            name: name.to_string(),
            hash: summary.nar_hash.clone(),
            nar_size: summary.nar_size,
            references: references.clone(),
        };
        self.write_meta(&base, &meta)?;
        log::info!("added {logical}");
        Ok(StorePath {
            path: logical,
            source: dest,
            hash: summary.nar_hash,
            references,
        })
    }

    /// Writes a record atomically (`flipside-atomic-file`); records are as readable as the
    /// trees they describe.
    fn write_meta(&self, base: &str, meta: &Meta) -> Result<()> {
        let target = self.meta_path(base);
        let mut text = serde_json::to_string_pretty(meta)
            .map_err(|e| write_error(&target, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        text.push('\n');
        flipside_atomic_file::write(&target, text.as_bytes())
            .map_err(|e| write_error(&target, e.into()))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    flipside_atomic_file::sync_dir(dir).map_err(|e| write_error(dir, e.into()))
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::ReadSource {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_hash_is_stable_and_covers_every_input() {
        let nar = format!("sha256:{}", "ab".repeat(32));
        let refs = vec!["/flipside/store/0c0aq1rx8hwbzj1l1lvxv3f1pz3vmd4y-lib".to_string()];
        let h = path_hash("app", &nar, &refs);
        assert_eq!(h.len(), 32);
        assert!(h.bytes().all(base32::is_digit));
        // Pinned (cross-checked with python3 hashlib + `nix-hash --type sha1 --to-base32`):
        // a change here renames every built-in store path.
        assert_eq!(h, path_hash("app", &nar, &refs));
        assert_eq!(h, "igy9zm1xgafd95d4npyw8hf3lzcxnfyj");
        assert_ne!(h, path_hash("app2", &nar, &refs));
        assert_ne!(
            h,
            path_hash("app", &format!("sha256:{}", "cd".repeat(32)), &refs)
        );
        assert_ne!(h, path_hash("app", &nar, &[]));
        // Reference order does not matter.
        let two = vec![
            refs[0].clone(),
            "/flipside/store/143xibwh31h9bvxzalr0sjvbbvpa6ffs-b".into(),
        ];
        let rev: Vec<String> = two.iter().rev().cloned().collect();
        assert_eq!(path_hash("app", &nar, &two), path_hash("app", &nar, &rev));
    }
}
