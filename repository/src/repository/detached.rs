//! Threshold signing across machines, the repository side: `prepare` writes a role's next
//! metadata for signers to carry away, `merge` checks their detached signatures
//! ([`crate::detached`]) and publishes only when every threshold is met.
//!
//! Root changes (renewal, new keys or thresholds of any role, a revocation) go through
//! `prepare --role root`: the root keys never come to the publishing machine. Merging a new
//! root re-signs with the keys directory what the new root requires: snapshot and timestamp
//! always, targets when its keys change, each with the keys the new root lists; key files of
//! keys the new root dropped move to `KEYS/retired/<role>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_tuf::{KeyId, PublicKey, Role, Root, Snapshot, Targets, Timestamp};

use super::{Published, Repository};
use crate::detached::{Authority, DetachedSignature, Prepared};
use crate::keys::{refs, KeyDir};
use crate::plan::{self, Next, Online, Signing};
use crate::state::{load, DirSource, Trusted};
use crate::Error;

/// Changes to root's keys and thresholds in a prepared root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootChange {
    /// Every key of a role, replacing the ones it has.
    pub keys: BTreeMap<Role, Vec<PublicKey>>,
    /// A role's new threshold.
    pub thresholds: BTreeMap<Role, u64>,
}

impl RootChange {
    /// Applies the change to `root` (memory only): roles' key ids and thresholds, keys no
    /// role uses any more dropped. Refuses a key shared by two roles, a key type flipside
    /// cannot verify, and a threshold of 0 or above the role's number of keys.
    pub fn apply(&self, root: &mut Root) -> Result<(), Error> {
        let settings = |why: String| Error::Settings { why };
        for (role, keys) in &self.keys {
            let mut ids = Vec::new();
            for key in keys {
                if key.verifier().is_none() {
                    return Err(settings(format!(
                        "a new {role} key of type {}/{} cannot verify signatures; use ed25519, ecdsa (P-256, P-384) or rsa",
                        key.keytype, key.scheme
                    )));
                }
                let id = key.key_id().map_err(|source| Error::Produce {
                    role: Role::Root,
                    source,
                })?;
                if !ids.contains(&id) {
                    ids.push(id.clone());
                }
                root.keys.insert(id, key.clone());
            }
            entry(root, *role)?.keyids = ids;
        }
        for (role, threshold) in &self.thresholds {
            entry(root, *role)?.threshold = *threshold;
        }
        let mut owner: BTreeMap<&KeyId, Role> = BTreeMap::new();
        for role in Role::ALL {
            let keys = root
                .role_keys(role)
                .map_err(|source| Error::Produce { role, source })?;
            if keys.threshold == 0 || keys.threshold > keys.keyids.len() as u64 {
                return Err(settings(format!(
                    "the {role} threshold {} needs between 1 and its {} keys",
                    keys.threshold,
                    keys.keyids.len()
                )));
            }
            for id in &keys.keyids {
                if let Some(other) = owner.insert(id, role) {
                    return Err(settings(format!(
                        "key {id} would serve both {other} and {role}; each role needs its own keys"
                    )));
                }
            }
        }
        let used: BTreeSet<KeyId> = owner.into_keys().cloned().collect();
        root.keys.retain(|id, _| used.contains(id));
        Ok(())
    }
}

fn entry(root: &mut Root, role: Role) -> Result<&mut flipside_tuf::RoleKeys, Error> {
    root.roles
        .get_mut(role.as_str())
        .ok_or_else(|| Error::Produce {
            role,
            source: flipside_tuf::Error::Invalid {
                role: Role::Root,
                why: format!("it lists no keys for the {role} role"),
            },
        })
}

/// Whether `a` and `b` give `role` the same keys and threshold.
fn same_keys(a: &Root, b: &Root, role: Role) -> bool {
    match (a.role_keys(role), b.role_keys(role)) {
        (Ok(x), Ok(y)) => {
            let (xs, ys): (BTreeSet<_>, BTreeSet<_>) =
                (x.keyids.iter().collect(), y.keyids.iter().collect());
            xs == ys && x.threshold == y.threshold
        }
        _ => false,
    }
}

/// The roles a new `role` publishes new versions of: itself and the ones after it (root,
/// targets, snapshot, timestamp), so their expiry is not checked before.
fn renewed_with(role: Role) -> Vec<Role> {
    Role::ALL.into_iter().filter(|r| *r >= role).collect()
}

/// The version a prepared `role` must have on top of `trusted`.
fn next_version(trusted: &Trusted, role: Role) -> Result<u64, Error> {
    let current = match role {
        Role::Root => trusted.root().signed.version,
        Role::Targets => trusted.targets.signed.version,
        Role::Snapshot => trusted.snapshot.signed.version,
        Role::Timestamp => trusted.timestamp.signed.version,
    };
    plan::bump(role, current)
}

impl Repository {
    /// The next version of `role`, unsigned, as the bytes of a TUF envelope: root renewed
    /// with `change` applied, targets renewed (same targets), or the snapshot or timestamp
    /// the next publish would make. Nothing is written to the repository.
    pub fn prepare(
        &mut self,
        role: Role,
        change: &RootChange,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, Error> {
        if role != Role::Root && *change != RootChange::default() {
            return Err(Error::Settings {
                why: format!("keys and thresholds change in root; prepare root, not {role}"),
            });
        }
        let policy = self.policy()?;
        let trusted = load(&DirSource { repo: &self.dir }, now, &renewed_with(role))?;
        let produce = |source| Error::Produce { role, source };
        let bytes = match role {
            Role::Root => {
                let mut root = plan::next_root(&trusted, &policy, now)?;
                change.apply(&mut root)?;
                unsigned(root)
            }
            Role::Targets => unsigned(plan::next_targets(&trusted, &policy, now)?),
            Role::Snapshot => {
                let targets = trusted.snapshot.signed.targets_meta().map_err(produce)?;
                unsigned(Snapshot::new(
                    next_version(&trusted, role)?,
                    plan::expires(&policy, role, now)?,
                    targets.clone(),
                ))
            }
            Role::Timestamp => {
                let snapshot = trusted.timestamp.signed.snapshot_meta().map_err(produce)?;
                unsigned(Timestamp::new(
                    next_version(&trusted, role)?,
                    plan::expires(&policy, role, now)?,
                    snapshot.clone(),
                ))
            }
        };
        bytes.map_err(produce)
    }

    /// Publishes the prepared metadata at `prepared` with the detached signatures in
    /// `signatures` once every threshold is met (root: the current root's and the new
    /// root's), re-signing with `keys` what it requires (see the module documentation). Any
    /// refusal publishes nothing.
    pub fn merge(
        &mut self,
        keys: &KeyDir,
        prepared: &Path,
        signatures: &[PathBuf],
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let bytes = std::fs::read(prepared).map_err(Error::io(prepared))?;
        let prepared_md = Prepared::from_slice(prepared, &bytes)?;
        let detached = signatures
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).map_err(Error::io(path))?;
                Ok((path.clone(), DetachedSignature::from_slice(path, &bytes)?))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let role = prepared_md.role;
        let policy = self.policy()?;
        let trusted = load(&DirSource { repo: &self.dir }, now, &renewed_with(role))?;
        let expected = next_version(&trusted, role)?;
        if prepared_md.version != expected {
            return Err(Error::PreparedStale {
                role,
                why: format!(
                    "it is version {}, the next {role} version is {expected}",
                    prepared_md.version
                ),
            });
        }
        let current = &trusted.root().signed;
        let tuf = |source| Error::Prepared {
            path: prepared.to_path_buf(),
            why: format!("{source}"),
        };
        let mut retired = Vec::new();
        let versions = match role {
            Role::Root => {
                let new = prepared_md
                    .metadata::<Root>(Vec::new())
                    .map_err(tuf)?
                    .signed;
                let authorities = [
                    Authority {
                        name: "the current root",
                        root: current,
                    },
                    Authority {
                        name: "the new root",
                        root: &new,
                    },
                ];
                let sigs = prepared_md.check(&detached, &authorities)?;
                let md = prepared_md.metadata::<Root>(sigs).map_err(tuf)?;
                let (targets_keys, old_targets) =
                    keys.signers_after(current, &new, Role::Targets)?;
                let targets = match same_keys(current, &new, Role::Targets) {
                    true => None,
                    false => {
                        keys.check_threshold(&new, Role::Targets, targets_keys.len())?;
                        let targets = plan::next_targets(&trusted, &policy, now)?;
                        Some(Signing::Sign(targets, refs(&targets_keys)))
                    }
                };
                let (snapshot_keys, old_snapshot) =
                    keys.signers_after(current, &new, Role::Snapshot)?;
                keys.check_threshold(&new, Role::Snapshot, snapshot_keys.len())?;
                let (timestamp_keys, old_timestamp) =
                    keys.signers_after(current, &new, Role::Timestamp)?;
                keys.check_threshold(&new, Role::Timestamp, timestamp_keys.len())?;
                let (_, old_root) = keys.signers_after(current, &new, Role::Root)?;
                let next = Next {
                    root: Some(Signing::Signed(md)),
                    targets,
                    snapshot: Online::Keys(refs(&snapshot_keys)),
                    timestamp: Online::Keys(refs(&timestamp_keys)),
                };
                let versions = self.publish_next(&trusted, next, &policy, now)?;
                for (r, files) in [
                    (Role::Root, old_root),
                    (Role::Targets, old_targets),
                    (Role::Snapshot, old_snapshot),
                    (Role::Timestamp, old_timestamp),
                ] {
                    for file in files {
                        retired.push(keys.retire(r, &file)?);
                    }
                }
                versions
            }
            _ => {
                let authorities = [Authority {
                    name: "root",
                    root: current,
                }];
                let sigs = prepared_md.check(&detached, &authorities)?;
                let signed_keys = |r: Role| match r > role {
                    true => keys.signers(current, r),
                    false => Ok(Vec::new()),
                };
                let snapshot_keys = signed_keys(Role::Snapshot)?;
                let timestamp_keys = signed_keys(Role::Timestamp)?;
                let mut next = Next {
                    root: None,
                    targets: None,
                    snapshot: Online::Keys(refs(&snapshot_keys)),
                    timestamp: Online::Keys(refs(&timestamp_keys)),
                };
                match role {
                    Role::Targets => {
                        let md = prepared_md.metadata::<Targets>(sigs).map_err(tuf)?;
                        next.targets = Some(Signing::Signed(md));
                    }
                    Role::Snapshot => {
                        let md = prepared_md.metadata::<Snapshot>(sigs).map_err(tuf)?;
                        next.snapshot = Online::Signed(md);
                    }
                    _ => {
                        let md = prepared_md.metadata::<Timestamp>(sigs).map_err(tuf)?;
                        next.snapshot = Online::Current;
                        next.timestamp = Online::Signed(md);
                    }
                }
                self.publish_next(&trusted, next, &policy, now)?
            }
        };
        Ok(Published {
            changed: true,
            versions,
            added: Vec::new(),
            withdrawn: Vec::new(),
            new_keys: Vec::new(),
            retired,
            newer: None,
        })
    }
}

/// An envelope with no signatures.
fn unsigned<T: flipside_tuf::RoleMetadata>(signed: T) -> Result<Vec<u8>, flipside_tuf::Error> {
    let (raw, _) = flipside_tuf::sign::signing_bytes(&signed)?;
    flipside_tuf::Metadata::<T>::from_parts(raw, Vec::new())?.to_bytes()
}
