//! Pruning: removing what no device can still need. Target files that the current targets
//! metadata no longer lists (withdrawn releases), and targets and snapshot versions older than
//! the current ones, once they are older than a grace period: a device that started a download
//! or a refresh before the change (or a CDN that still serves the older state) finishes it.
//! Every root version stays: clients walk the root chain from the one they trust. Nothing is
//! signed; the metadata is not changed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use chrono::{DateTime, TimeDelta, Utc};
use flipside_tuf::Role;

use super::Repository;
use crate::layout::{self, METADATA_DIR, TARGETS_DIR};
use crate::state::{load, DirSource, Trusted};
use crate::Error;

/// How long a file that became unreferenced stays, by default: longer than a week of
/// timestamps (and of CDN caches that honour them).
pub const DEFAULT_GRACE: TimeDelta = TimeDelta::days(7);

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// A file of the repository: its name, size and last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub len: u64,
    pub modified: DateTime<Utc>,
}

/// The names of `targets/` and `metadata/` files that `trusted` no longer needs and that are
/// older than `grace` at `now` (pure).
pub fn unneeded(
    trusted: &Trusted,
    targets: &[FileEntry],
    metadata: &[FileEntry],
    now: DateTime<Utc>,
    grace: TimeDelta,
) -> (Vec<String>, Vec<String>) {
    let old = |f: &FileEntry| now - f.modified >= grace;
    let listed: BTreeSet<String> = trusted
        .targets
        .signed
        .targets
        .iter()
        .filter_map(|(name, t)| Some(layout::target_file(t.hashes.get("sha256")?, name)))
        .collect();
    let stale_targets = targets
        .iter()
        .filter(|f| !f.name.starts_with(layout::TEMP_PREFIX))
        .filter(|f| !listed.contains(&f.name) && old(f))
        .map(|f| f.name.clone())
        .collect();
    let current = [
        (Role::Targets, trusted.targets.signed.version),
        (Role::Snapshot, trusted.snapshot.signed.version),
    ];
    let stale_metadata = metadata
        .iter()
        .filter(|f| {
            current
                .iter()
                .any(|(role, version)| (1..*version).any(|v| f.name == layout::versioned(*role, v)))
        })
        .filter(|f| old(f))
        .map(|f| f.name.clone())
        .collect();
    (stale_targets, stale_metadata)
}

impl Repository {
    /// Removes (unless `dry_run`) the files [`unneeded`] finds, holding the publisher lock.
    /// The repository is verified first (expiry aside: pruning renews nothing).
    pub fn prune(
        &mut self,
        now: DateTime<Utc>,
        grace: TimeDelta,
        dry_run: bool,
    ) -> Result<Pruned, Error> {
        let trusted = load(&DirSource { repo: &self.dir }, now, &Role::ALL)?;
        let targets_dir = self.dir.join(TARGETS_DIR);
        let metadata_dir = self.dir.join(METADATA_DIR);
        let (t, m) = unneeded(
            &trusted,
            &entries(&targets_dir)?,
            &entries(&metadata_dir)?,
            now,
            grace,
        );
        let mut pruned = Pruned::default();
        let paths = t
            .iter()
            .map(|n| targets_dir.join(n))
            .chain(m.iter().map(|n| metadata_dir.join(n)));
        for path in paths {
            let len = std::fs::metadata(&path).map_err(Error::io(&path))?.len();
            if !dry_run {
                std::fs::remove_file(&path).map_err(Error::io(&path))?;
            }
            pruned.bytes += len;
            pruned.files.push(path);
        }
        if !dry_run && !pruned.files.is_empty() {
            for dir in [&targets_dir, &metadata_dir] {
                flipside_atomic_file::sync_dir(dir).map_err(|e| Error::Io {
                    path: dir.to_path_buf(),
                    source: e.into(),
                })?;
            }
        }
        Ok(pruned)
    }
}

/// The regular files of `dir`.
fn entries(dir: &std::path::Path) -> Result<Vec<FileEntry>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let meta = entry.metadata().map_err(Error::io(entry.path()))?;
        if !meta.is_file() {
            continue;
        }
        let modified: SystemTime = meta.modified().map_err(Error::io(entry.path()))?;
        out.push(FileEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            len: meta.len(),
            modified: modified.into(),
        });
    }
    Ok(out)
}
