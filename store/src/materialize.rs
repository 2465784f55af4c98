//! Laying a store path's files into an image tree, from either source, and checking a store
//! path against its recorded content hash.

use std::fs;
use std::path::Path;

use crate::closure::StorePath;
use crate::tree::{walk, CopyMode, Rules, TreeSummary};
use crate::{Error, Result};

/// Copies `path`'s tree to `dest` (which must not exist; its parents are created)
/// deterministically: entries in name order, directories 0555, files 0444 or 0555 by their
/// executable bit, symlinks as they are, times set to 1 s after the epoch.
///
/// The store rules are checked as the tree is copied (no special files, no symlink escaping
/// the store, none into a store path that `path` does not reference; absolute links to image
/// paths are copied as they are, not followed), and the NAR hash of the
/// bytes copied must equal `path.hash`: a store path modified after it was added is
/// [`Error::Corrupt`]. On error `dest` may hold part of the tree; discard it.
pub fn materialize(path: &StorePath, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::Write {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    let summary = walk(
        &path.source,
        Some((dest, CopyMode::Materialize)),
        rules(path),
        None,
    )?;
    check(path, summary)
}

/// Re-reads `path`'s tree and checks it against the store rules and its recorded hash.
pub fn verify(path: &StorePath) -> Result<()> {
    let summary = walk(&path.source, None, rules(path), None)?;
    check(path, summary)
}

fn rules(path: &StorePath) -> Rules<'_> {
    Rules {
        store_dir: path.store_dir(),
        own: Some(path.base_name()),
    }
}

fn check(path: &StorePath, summary: TreeSummary) -> Result<()> {
    if summary.nar_hash != path.hash {
        return Err(Error::Corrupt {
            path: path.path.clone(),
            source_path: path.source.clone(),
            expected: path.hash.clone(),
            actual: summary.nar_hash,
        });
    }
    for base in summary.link_targets.keys() {
        let target = format!("{}/{base}", path.store_dir());
        if !path.references.contains(&target) {
            return Err(Error::DanglingReference {
                path: path.path.clone(),
                reference: target,
            });
        }
    }
    Ok(())
}
