//! The next metadata of an operation, built without I/O: the current verified state, the new
//! root and targets content (if they change), the signing keys and the clock in; the files to
//! publish, in publishing order, out.

use chrono::{DateTime, Utc};
use flipside_tuf::{
    expiry, MetaFile, Metadata, Role, RoleMetadata, Root, SigningKey, Snapshot, Targets, Timestamp,
};

use crate::layout::{self, ROOT_COPY_FILE, TIMESTAMP_FILE};
use crate::settings::Policy;
use crate::state::Trusted;
use crate::Error;

/// Versions of the four roles after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// What changes, and the keys that sign each new role.
pub(crate) struct Next<'k> {
    /// New root content (from [`next_root`]) and the keys that sign it.
    pub root: Option<(Root, Vec<&'k SigningKey>)>,
    /// New targets content (from [`next_targets`]) and the keys that sign it.
    pub targets: Option<(Targets, Vec<&'k SigningKey>)>,
    pub snapshot_keys: Vec<&'k SigningKey>,
    pub timestamp_keys: Vec<&'k SigningKey>,
}

/// The files of an operation, in publishing order: targets, snapshot, root (versioned, then
/// the `root.json` copy), timestamp last.
#[derive(Debug)]
pub(crate) struct Plan {
    pub files: Vec<(String, Vec<u8>)>,
    pub versions: Versions,
}

/// The version after `version`.
pub(crate) fn bump(role: Role, version: u64) -> Result<u64, Error> {
    version.checked_add(1).ok_or_else(|| Error::Produce {
        role,
        source: flipside_tuf::Error::Invalid {
            role,
            why: "the version cannot grow any further".to_string(),
        },
    })
}

/// The expiry of new `role` metadata made at `now`.
pub(crate) fn expires(
    policy: &Policy,
    role: Role,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Error> {
    expiry::expires_after(now, policy.valid_for(role)).ok_or_else(|| Error::Settings {
        why: format!("the {role} expiry period reaches beyond the representable time"),
    })
}

/// The newest root with the next version and a new expiry (keys unchanged).
pub(crate) fn next_root(
    current: &Trusted,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Root, Error> {
    let mut root = current.root().signed.clone();
    root.version = bump(Role::Root, root.version)?;
    root.expires = expires(policy, Role::Root, now)?;
    Ok(root)
}

/// The current targets with the next version and a new expiry (targets unchanged).
pub(crate) fn next_targets(
    current: &Trusted,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Targets, Error> {
    let mut targets = current.targets.signed.clone();
    targets.version = bump(Role::Targets, targets.version)?;
    targets.expires = expires(policy, Role::Targets, now)?;
    Ok(targets)
}

fn sign<T: RoleMetadata>(content: T, keys: &[&SigningKey]) -> Result<Vec<u8>, Error> {
    Metadata::sign(content, keys)
        .and_then(|md| md.to_bytes())
        .map_err(|source| Error::Produce {
            role: T::ROLE,
            source,
        })
}

/// Signs the new metadata. With no current state (init), root and targets must be given.
pub(crate) fn plan(
    current: Option<&Trusted>,
    next: Next<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Plan, Error> {
    let missing = |role| Error::Produce {
        role,
        source: flipside_tuf::Error::Invalid {
            role,
            why: "a new repository needs it".to_string(),
        },
    };
    let mut files = Vec::new();

    let (targets_version, targets_entry) = match (next.targets, current) {
        (Some((targets, keys)), _) => {
            let version = targets.version;
            let bytes = sign(targets, &keys)?;
            let entry = MetaFile::of_bytes(version, &bytes);
            files.push((layout::versioned(Role::Targets, version), bytes));
            (version, entry)
        }
        (None, Some(current)) => {
            let entry = current
                .snapshot
                .signed
                .targets_meta()
                .map_err(|source| Error::Produce {
                    role: Role::Snapshot,
                    source,
                })?
                .clone();
            (current.targets.signed.version, entry)
        }
        (None, None) => return Err(missing(Role::Targets)),
    };

    let snapshot_version = match current {
        Some(c) => bump(Role::Snapshot, c.snapshot.signed.version)?,
        None => 1,
    };
    let snapshot = Snapshot::new(
        snapshot_version,
        expires(policy, Role::Snapshot, now)?,
        targets_entry,
    );
    let snapshot_bytes = sign(snapshot, &next.snapshot_keys)?;
    let snapshot_entry = MetaFile::of_bytes(snapshot_version, &snapshot_bytes);
    files.push((
        layout::versioned(Role::Snapshot, snapshot_version),
        snapshot_bytes,
    ));

    let root_version = match (next.root, current) {
        (Some((root, keys)), _) => {
            let version = root.version;
            let bytes = sign(root, &keys)?;
            files.push((layout::versioned(Role::Root, version), bytes.clone()));
            files.push((ROOT_COPY_FILE.to_string(), bytes));
            version
        }
        (None, Some(current)) => current.root().signed.version,
        (None, None) => return Err(missing(Role::Root)),
    };

    let timestamp_version = match current {
        Some(c) => bump(Role::Timestamp, c.timestamp.signed.version)?,
        None => 1,
    };
    let timestamp = Timestamp::new(
        timestamp_version,
        expires(policy, Role::Timestamp, now)?,
        snapshot_entry,
    );
    files.push((
        TIMESTAMP_FILE.to_string(),
        sign(timestamp, &next.timestamp_keys)?,
    ));

    Ok(Plan {
        files,
        versions: Versions {
            root: root_version,
            targets: targets_version,
            snapshot: snapshot_version,
            timestamp: timestamp_version,
        },
    })
}
