//! Loading a repository and verifying all of it: what a client checks (root chain, signatures,
//! versions, lengths and hashes, expiry) plus what a publisher relies on (every version file
//! present, `root.json` equal to the newest root, target files present with their lengths).
//!
//! Verification reads through [`Source`], so an operation verifies its new state (new files
//! over the current ones) with the same code before it publishes anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_tuf::verify::{verify_role, verify_root_update};
use flipside_tuf::{expiry, Metadata, Role, RoleMetadata, Root, Snapshot, Targets, Timestamp};

use crate::layout::{self, METADATA_DIR, ROOT_COPY_FILE, TARGETS_DIR, TIMESTAMP_FILE};
use crate::Error;

/// Where verification reads a repository from.
pub(crate) trait Source {
    /// The bytes of a file in `metadata/`, or `None` if there is none.
    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    /// The length of a file in `targets/`, or `None` if there is none.
    fn target_len(&self, file_name: &str) -> Result<Option<u64>, Error>;
    /// The repository directory, for messages.
    fn repo(&self) -> &Path;
}

/// A repository directory on disk.
pub(crate) struct DirSource<'a> {
    pub repo: &'a Path,
}

impl Source for DirSource<'_> {
    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.repo.join(METADATA_DIR).join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    fn target_len(&self, file_name: &str) -> Result<Option<u64>, Error> {
        let path = self.repo.join(TARGETS_DIR).join(file_name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    fn repo(&self) -> &Path {
        self.repo
    }
}

/// New files laid over a source: the state an operation is about to publish.
pub(crate) struct Overlay<'a> {
    pub base: &'a dyn Source,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub targets: BTreeMap<String, u64>,
}

impl Source for Overlay<'_> {
    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.metadata.get(name) {
            Some(bytes) => Ok(Some(bytes.clone())),
            None => self.base.metadata(name),
        }
    }

    fn target_len(&self, file_name: &str) -> Result<Option<u64>, Error> {
        match self.targets.get(file_name) {
            Some(len) => Ok(Some(*len)),
            None => self.base.target_len(file_name),
        }
    }

    fn repo(&self) -> &Path {
        self.base.repo()
    }
}

/// A fully verified repository state.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// Every root, version 1 first, never empty (private so that only `load` makes one).
    roots: Vec<Metadata<Root>>,
    pub targets: Metadata<Targets>,
    pub snapshot: Metadata<Snapshot>,
    pub timestamp: Metadata<Timestamp>,
}

impl Trusted {
    /// The newest root.
    pub fn root(&self) -> &Metadata<Root> {
        // `load` never builds a state without root 1.
        &self.roots[self.roots.len() - 1]
    }

    /// Every root, version 1 first; each verified against the one before.
    pub fn roots(&self) -> &[Metadata<Root>] {
        &self.roots
    }
}

/// Loads and verifies a repository. Expiry of the roles in `renewing` is not checked (the
/// operation is about to replace them); every other role must be unexpired at `now`.
pub(crate) fn load(
    source: &dyn Source,
    now: DateTime<Utc>,
    renewing: &[Role],
) -> Result<Trusted, Error> {
    let corrupt = |name: &str| corrupt(source, name);
    let inconsistent = |name: &str, why: String| inconsistent(source, name, why);

    // Root 1 is trusted on first use (the operator made it); every later root must be signed
    // by a threshold of the one before and of itself (specification 5.3).
    let first = layout::versioned(Role::Root, 1);
    let bytes = source
        .metadata(&first)?
        .ok_or_else(|| Error::NotARepository {
            path: source.repo().to_path_buf(),
        })?;
    let root = Metadata::<Root>::from_slice(&bytes).map_err(corrupt(&first))?;
    verify_role(&root.signed, &root).map_err(corrupt(&first))?;
    if root.signed.version != 1 {
        return Err(inconsistent(
            &first,
            format!("it has version {}", root.signed.version),
        ));
    }
    let mut roots = vec![root];
    let mut newest_bytes = bytes;
    loop {
        let trusted = &roots[roots.len() - 1].signed;
        let Some(version) = trusted.version.checked_add(1) else {
            break;
        };
        let name = layout::versioned(Role::Root, version);
        let Some(bytes) = source.metadata(&name)? else {
            break;
        };
        let next = Metadata::<Root>::from_slice(&bytes).map_err(corrupt(&name))?;
        verify_root_update(trusted, &next).map_err(corrupt(&name))?;
        roots.push(next);
        newest_bytes = bytes;
    }
    let root = &roots[roots.len() - 1];
    if !root.signed.consistent_snapshot() {
        return Err(inconsistent(
            &layout::versioned(Role::Root, root.signed.version),
            "consistent snapshots are off; flipside repositories always use them".to_string(),
        ));
    }
    check_expiry(&root.signed, now, renewing)?;
    if source.metadata(ROOT_COPY_FILE)?.as_deref() != Some(newest_bytes.as_slice()) {
        return Err(inconsistent(
            ROOT_COPY_FILE,
            format!(
                "it is missing or differs from the newest root {}",
                layout::versioned(Role::Root, root.signed.version)
            ),
        ));
    }

    // Timestamp -> snapshot -> targets, each checked against the entry that names it.
    let bytes = source
        .metadata(TIMESTAMP_FILE)?
        .ok_or_else(|| inconsistent(TIMESTAMP_FILE, "it is missing".to_string()))?;
    let timestamp = Metadata::<Timestamp>::from_slice(&bytes).map_err(corrupt(TIMESTAMP_FILE))?;
    verify_role(&root.signed, &timestamp).map_err(corrupt(TIMESTAMP_FILE))?;
    check_expiry(&timestamp.signed, now, renewing)?;

    let entry = timestamp
        .signed
        .snapshot_meta()
        .map_err(corrupt(TIMESTAMP_FILE))?;
    let snapshot: Metadata<Snapshot> = load_named(source, &root.signed, entry)?;
    check_expiry(&snapshot.signed, now, renewing)?;

    let entry = snapshot
        .signed
        .targets_meta()
        .map_err(corrupt(&layout::versioned(
            Role::Snapshot,
            snapshot.signed.version,
        )))?;
    let targets: Metadata<Targets> = load_named(source, &root.signed, entry)?;
    check_expiry(&targets.signed, now, renewing)?;
    check_target_files(source, &targets)?;

    Ok(Trusted {
        roots,
        targets,
        snapshot,
        timestamp,
    })
}

/// Loads `{version}.{role}.json` named by `entry` and checks it against the entry and root.
fn load_named<T: RoleMetadata>(
    source: &dyn Source,
    root: &Root,
    entry: &flipside_tuf::MetaFile,
) -> Result<Metadata<T>, Error> {
    let name = layout::versioned(T::ROLE, entry.version);
    let bytes = source
        .metadata(&name)?
        .ok_or_else(|| inconsistent(source, &name, "it is missing".to_string()))?;
    entry
        .check_bytes(&name, &bytes)
        .map_err(corrupt(source, &name))?;
    let md = Metadata::<T>::from_slice(&bytes).map_err(corrupt(source, &name))?;
    verify_role(root, &md).map_err(corrupt(source, &name))?;
    if md.signed.version() != entry.version {
        return Err(inconsistent(
            source,
            &name,
            format!("it holds version {}", md.signed.version()),
        ));
    }
    Ok(md)
}

fn corrupt(source: &dyn Source, name: &str) -> impl FnOnce(flipside_tuf::Error) -> Error {
    let path = source.repo().join(METADATA_DIR).join(name);
    move |source| Error::Corrupt { path, source }
}

fn inconsistent(source: &dyn Source, name: &str, why: String) -> Error {
    Error::Inconsistent {
        path: source.repo().join(METADATA_DIR).join(name),
        why,
    }
}

fn check_expiry<T: RoleMetadata>(
    md: &T,
    now: DateTime<Utc>,
    renewing: &[Role],
) -> Result<(), Error> {
    if renewing.contains(&T::ROLE) {
        return Ok(());
    }
    expiry::check(T::ROLE, md.expires(), now).map_err(|_| Error::Expired {
        role: T::ROLE,
        expires: md.expires(),
        now,
    })
}

/// Every target has a safe name, a sha256, and its file with the signed length.
fn check_target_files(source: &dyn Source, targets: &Metadata<Targets>) -> Result<(), Error> {
    let name = layout::versioned(Role::Targets, targets.signed.version);
    let path = source.repo().join(METADATA_DIR).join(&name);
    for (target, info) in &targets.signed.targets {
        flipside_contract::release::check_name(target).map_err(|e| Error::Inconsistent {
            path: path.clone(),
            why: format!("target {e}"),
        })?;
        let sha = info.sha256(target).map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        let file = layout::target_file(&hex::encode(sha), target);
        let file_path = || PathBuf::from(source.repo()).join(TARGETS_DIR).join(&file);
        match source.target_len(&file)? {
            Some(len) if len == info.length => {}
            Some(len) => {
                return Err(Error::Inconsistent {
                    path: file_path(),
                    why: format!(
                        "it is {len} bytes long, its signed length is {}",
                        info.length
                    ),
                })
            }
            None => {
                return Err(Error::Inconsistent {
                    path: file_path(),
                    why: format!("the file of target {target} is missing"),
                })
            }
        }
    }
    Ok(())
}
