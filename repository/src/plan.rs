//! The next metadata of an operation, built without I/O: the current verified state, the new
//! root and targets content (if they change), the signing keys (or metadata already signed
//! elsewhere, merged from detached signatures) and the clock in; the files to publish, in
//! publishing order, out.

use chrono::{DateTime, Utc};
use flipside_tuf::{
    expiry, MetaFile, Metadata, Role, RoleMetadata, Root, Signer, Snapshot, Targets, Timestamp,
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

/// New root or targets metadata: content to sign here, or metadata signed elsewhere.
pub(crate) enum Signing<'k, T> {
    /// The content (from [`next_root`] or [`next_targets`]) and the keys that sign it.
    Sign(T, Vec<&'k dyn Signer>),
    /// Metadata signed elsewhere (detached signatures merged), published as it is.
    Signed(Metadata<T>),
}

/// How the snapshot or timestamp of the operation is signed: here with these keys, or
/// elsewhere, in which case it must be exactly the version and content this plan makes.
pub(crate) enum Online<'k, T> {
    Keys(Vec<&'k dyn Signer>),
    Signed(Metadata<T>),
    /// Snapshot only, and only when targets do not change: publish no new snapshot (a merge
    /// of a timestamp prepared elsewhere, which names the current one).
    Current,
}

/// What changes, and the keys that sign each new role.
pub(crate) struct Next<'k> {
    pub root: Option<Signing<'k, Root>>,
    pub targets: Option<Signing<'k, Targets>>,
    pub snapshot: Online<'k, Snapshot>,
    pub timestamp: Online<'k, Timestamp>,
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

fn sign<T: RoleMetadata>(content: T, keys: &[&dyn Signer]) -> Result<Vec<u8>, Error> {
    let role = T::ROLE;
    let signed = Metadata::sign_with(content, keys).map_err(|source| match source {
        source @ flipside_tuf::Error::Signer { .. } => Error::Sign { role, source },
        source => Error::Produce { role, source },
    })?;
    bytes(&signed)
}

fn bytes<T: RoleMetadata>(md: &Metadata<T>) -> Result<Vec<u8>, Error> {
    md.to_bytes().map_err(|source| Error::Produce {
        role: T::ROLE,
        source,
    })
}

/// The bytes of a new root or targets.
fn produce<T: RoleMetadata + Clone>(new: Signing<'_, T>) -> Result<(T, Vec<u8>), Error> {
    match new {
        Signing::Sign(content, keys) => {
            let bytes = sign(content.clone(), &keys)?;
            Ok((content, bytes))
        }
        Signing::Signed(md) => Ok((md.signed.clone(), bytes(&md)?)),
    }
}

/// The bytes of the snapshot or timestamp this plan makes (`made`), signed here or, when
/// signed elsewhere, refused unless it is that same version and names the same file.
fn produce_online<T, F>(online: Online<'_, T>, made: T, same: F) -> Result<Vec<u8>, Error>
where
    T: RoleMetadata,
    F: Fn(&T, &T) -> bool,
{
    match online {
        Online::Keys(keys) => sign(made, &keys),
        // `plan` never asks for a made snapshot or timestamp that stays as it is.
        Online::Current => Err(Error::Produce {
            role: T::ROLE,
            source: flipside_tuf::Error::Invalid {
                role: T::ROLE,
                why: "a new version was asked to stay the current one".to_string(),
            },
        }),
        Online::Signed(md) if same(&md.signed, &made) => bytes(&md),
        Online::Signed(_) => Err(Error::PreparedStale {
            role: T::ROLE,
            why: format!(
                "the repository changed since it was prepared (the {} it would publish now names other files)",
                T::ROLE
            ),
        }),
    }
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

    let targets_changed = next.targets.is_some();
    let (targets_version, targets_entry) = match (next.targets, current) {
        (Some(new), _) => {
            let (targets, bytes) = produce(new)?;
            let version = targets.version;
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

    let (snapshot_version, snapshot_entry) = match (next.snapshot, current) {
        (Online::Current, Some(c)) if !targets_changed => {
            let entry = c
                .timestamp
                .signed
                .snapshot_meta()
                .map_err(|source| Error::Produce {
                    role: Role::Timestamp,
                    source,
                })?
                .clone();
            (c.snapshot.signed.version, entry)
        }
        (Online::Current, _) => return Err(missing(Role::Snapshot)),
        (online, current) => {
            let version = match current {
                Some(c) => bump(Role::Snapshot, c.snapshot.signed.version)?,
                None => 1,
            };
            let snapshot = Snapshot::new(
                version,
                expires(policy, Role::Snapshot, now)?,
                targets_entry,
            );
            let bytes = produce_online(online, snapshot, |a: &Snapshot, b| {
                a.version == b.version && a.meta == b.meta
            })?;
            let entry = MetaFile::of_bytes(version, &bytes);
            files.push((layout::versioned(Role::Snapshot, version), bytes));
            (version, entry)
        }
    };

    let root_version = match (next.root, current) {
        (Some(new), _) => {
            let (root, bytes) = produce(new)?;
            let version = root.version;
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
    let timestamp_bytes = produce_online(next.timestamp, timestamp, |a: &Timestamp, b| {
        a.version == b.version && a.meta == b.meta
    })?;
    files.push((TIMESTAMP_FILE.to_string(), timestamp_bytes));

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
