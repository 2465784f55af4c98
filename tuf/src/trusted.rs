//! A client's trusted top-level metadata, updated in the order and with the checks of the
//! specification's client workflow (sections 5.2-5.6). Pure: bytes in (however the caller
//! fetched or cached them), verdicts out; the reference time is fixed when the set is made
//! (5.1), so a clock moving during an update changes nothing.
//!
//! Order of calls: [`TrustedSet::new`] with the trusted root; [`TrustedSet::update_root`] for
//! N+1, N+2, ... until the repository has no newer root; cached timestamp and snapshot with
//! [`Origin::Cached`] (a cached file that fails, e.g. after its role's keys rotated, is simply
//! not trusted and should be deleted: this is the fast-forward recovery of 5.3.11); then the
//! remote timestamp, snapshot and targets with [`Origin::Remote`].

use chrono::{DateTime, Utc};

use crate::metadata::{
    DelegatedRole, Delegations, Metadata, Role, RoleMetadata, Root, Snapshot, Targets, Timestamp,
};
use crate::verify::{verify_role, verify_root_update, verify_signatures};
use crate::{expiry, Error, Result};

/// Where metadata offered to the set comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Verified earlier and kept locally: trusted as a floor for rollback checks even if it
    /// has expired since.
    Cached,
    /// Just fetched from the repository: must not have expired.
    Remote,
}

/// Result of offering a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// A newer timestamp is now trusted.
    New,
    /// Same version as the trusted one: nothing changed in the repository (5.4.3.1).
    Unchanged,
}

/// The trusted metadata of one update run.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    reference_time: DateTime<Utc>,
    root: Metadata<Root>,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    targets: Option<Metadata<Targets>>,
}

impl TrustedSet {
    /// 5.2: the trusted root (shipped with the device, or the newest one cached), which must be
    /// signed by a threshold of its own root keys. Its expiry is checked after the root
    /// updates (5.3.10), so an expired trusted root can still be updated.
    pub fn new(root: &[u8], reference_time: DateTime<Utc>) -> Result<Self> {
        let root = Metadata::<Root>::from_slice(root)?;
        verify_role(&root.signed, &root)?;
        Ok(TrustedSet {
            reference_time,
            root,
            timestamp: None,
            snapshot: None,
            targets: None,
        })
    }

    pub fn reference_time(&self) -> DateTime<Utc> {
        self.reference_time
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    pub fn timestamp(&self) -> Option<&Metadata<Timestamp>> {
        self.timestamp.as_ref()
    }

    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        self.snapshot.as_ref()
    }

    pub fn targets(&self) -> Option<&Metadata<Targets>> {
        self.targets.as_ref()
    }

    /// 5.3.4-5.3.8: root N+1, signed by a threshold of root N's keys and of its own.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<()> {
        if self.timestamp.is_some() {
            return Err(Error::OutOfOrder {
                role: Role::Root,
                why: "roots are updated before any timestamp is trusted",
            });
        }
        let new = Metadata::<Root>::from_slice(bytes)?;
        verify_root_update(&self.root.signed, &new)?;
        self.root = new;
        Ok(())
    }

    /// 5.3.10 and 5.4: a timestamp signed by the root's timestamp keys, not older than the
    /// trusted one, naming a snapshot version not older than the trusted one names.
    pub fn update_timestamp(&mut self, bytes: &[u8], origin: Origin) -> Result<TimestampUpdate> {
        if self.snapshot.is_some() {
            return Err(Error::OutOfOrder {
                role: Role::Timestamp,
                why: "the timestamp is updated before the snapshot",
            });
        }
        // 5.3.10: the final root must not have expired (freeze attack).
        self.check_expiry(&self.root.signed)?;
        let new = Metadata::<Timestamp>::from_slice(bytes)?;
        verify_role(&self.root.signed, &new)?;
        let new_snapshot = new.signed.snapshot_meta()?.version;
        if let Some(trusted) = &self.timestamp {
            let (old, version) = (trusted.signed.version, new.signed.version);
            if version < old {
                return Err(Error::Rollback {
                    role: Role::Timestamp,
                    trusted: old,
                    new: version,
                });
            }
            if version == old {
                return Ok(TimestampUpdate::Unchanged);
            }
            let old_snapshot = trusted.signed.snapshot_meta()?.version;
            if new_snapshot < old_snapshot {
                return Err(Error::Rollback {
                    role: Role::Snapshot,
                    trusted: old_snapshot,
                    new: new_snapshot,
                });
            }
        }
        if origin == Origin::Remote {
            self.check_expiry(&new.signed)?;
        }
        self.timestamp = Some(new);
        Ok(TimestampUpdate::New)
    }

    /// 5.5: a snapshot signed by the root's snapshot keys, listing every file the trusted
    /// snapshot lists with a version not below it. A remote snapshot must be the one the
    /// trusted timestamp names (length, hashes, version) and unexpired; a cached one is only
    /// a floor for the rollback check of the next (python-tuf does the same), and must be
    /// that final snapshot when targets are loaded.
    pub fn update_snapshot(&mut self, bytes: &[u8], origin: Origin) -> Result<()> {
        if self.targets.is_some() {
            return Err(Error::OutOfOrder {
                role: Role::Snapshot,
                why: "the snapshot is updated before the targets",
            });
        }
        let timestamp = self.timestamp.as_ref().ok_or(Error::OutOfOrder {
            role: Role::Snapshot,
            why: "no timestamp is trusted yet",
        })?;
        self.check_expiry(&timestamp.signed)?;
        let entry = timestamp.signed.snapshot_meta()?.clone();
        if origin == Origin::Remote {
            entry.check_bytes("snapshot metadata", bytes)?;
        }
        let new = Metadata::<Snapshot>::from_slice(bytes)?;
        verify_role(&self.root.signed, &new)?;
        if let Some(trusted) = &self.snapshot {
            for (name, old) in &trusted.signed.meta {
                let found = new.signed.meta.get(name).map(|m| m.version).unwrap_or(0);
                if found < old.version {
                    return Err(Error::Rollback {
                        role: Role::Targets,
                        trusted: old.version,
                        new: found,
                    });
                }
            }
        }
        if origin == Origin::Remote {
            check_version(Role::Snapshot, entry.version, new.signed.version)?;
            self.check_expiry(&new.signed)?;
        }
        self.snapshot = Some(new);
        Ok(())
    }

    /// 5.6: the targets the final snapshot names (length, hashes, version), signed by the
    /// root's targets keys, not expired (cached targets are checked too: they are used).
    pub fn update_targets(&mut self, bytes: &[u8]) -> Result<()> {
        let (Some(timestamp), Some(snapshot)) = (&self.timestamp, &self.snapshot) else {
            return Err(Error::OutOfOrder {
                role: Role::Targets,
                why: "no snapshot is trusted yet",
            });
        };
        // The snapshot must be the final one: named by the timestamp, unexpired.
        let named = timestamp.signed.snapshot_meta()?.version;
        check_version(Role::Snapshot, named, snapshot.signed.version)?;
        self.check_expiry(&snapshot.signed)?;
        let entry = snapshot.signed.targets_meta()?;
        entry.check_bytes("targets metadata", bytes)?;
        let new = Metadata::<Targets>::from_slice(bytes)?;
        verify_role(&self.root.signed, &new)?;
        check_version(Role::Targets, entry.version, new.signed.version)?;
        self.check_expiry(&new.signed)?;
        self.targets = Some(new);
        Ok(())
    }

    /// 5.6 for delegated role `role`, listed in `delegations` (of the top-level targets or of
    /// another delegated role, already verified): the `ROLE.json` the final snapshot names
    /// (version, and length and hashes where given), signed by a threshold of the keys the
    /// delegation gives it, not expired. Returns the metadata; the set keeps only top-level
    /// roles, the caller keeps delegated ones for the search.
    pub fn verify_delegated(
        &self,
        bytes: &[u8],
        role: &DelegatedRole,
        delegations: &Delegations,
    ) -> Result<Metadata<Targets>> {
        if self.targets.is_none() {
            return Err(Error::OutOfOrder {
                role: Role::Targets,
                why: "delegated roles are loaded after the top-level targets",
            });
        }
        let snapshot = self.snapshot.as_ref().ok_or(Error::OutOfOrder {
            role: Role::Targets,
            why: "no snapshot is trusted yet",
        })?;
        let file = format!("{}.json", role.name);
        let entry = snapshot
            .signed
            .meta
            .get(&file)
            .ok_or_else(|| Error::Invalid {
                role: Role::Snapshot,
                why: format!(
                    "it has no entry for {file}, the delegated role {:?}",
                    role.name
                ),
            })?;
        entry.check_bytes(&format!("delegated role {}", role.name), bytes)?;
        let new = Metadata::<Targets>::from_slice(bytes)?;
        verify_signatures(
            Role::Targets,
            new.raw_signed(),
            &new.signatures,
            &role.role_keys(),
            &delegations.keys,
        )?;
        check_version(Role::Targets, entry.version, new.signed.version)?;
        self.check_expiry(&new.signed)?;
        Ok(new)
    }

    fn check_expiry<T: RoleMetadata>(&self, md: &T) -> Result<()> {
        expiry::check(T::ROLE, md.expires(), self.reference_time)
    }
}

fn check_version(role: Role, expected: u64, found: u64) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::VersionMismatch {
            role,
            expected,
            found,
        })
    }
}

#[cfg(test)]
mod tests;
