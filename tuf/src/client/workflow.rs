//! The client workflow (specification 1.0, section 5) as named steps in specification order
//! over a context struct, with [`TrustedSet`] making every verdict: `refresh` for the
//! top-level roles, `find_target` for the search of delegated roles (5.6.7, order and rules in
//! [`crate::delegation`]), `download_target` for 5.7.
//!
//! Persistence: each root accepted in the chain is written at once (5.3.8), so a chain longer
//! than [`Limits::max_root_rotations`] continues on the next refresh; a root that changes the
//! timestamp or snapshot keys deletes the cached timestamp and snapshot before it is written
//! (5.3.11), so no failure or crash can leave new keys next to versions the old keys may have
//! inflated. The timestamp, snapshot and targets are likewise each written as soon as they
//! verify (as python-tuf does): when the snapshot is then refused, the new timestamp is
//! already the trusted one, so the next refresh checks rollback against it. The last trusted
//! time is recorded only after the whole refresh succeeded; a refusal leaves the refused role
//! and every role after it byte for byte as it was.
//!
//! When the remote timestamp has the version already trusted (5.4.3.1, "nothing changed"),
//! the cached snapshot and targets are used again, checked as if fetched (version, hashes,
//! expiry), so an unchanged repository costs two small requests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use chrono::{DateTime, Utc};

use crate::client::target::{copy_verified, TargetName};
use crate::client::transport::{fetch_capped, fetch_required, Transport, TransportError};
use crate::client::{secure_time, Error, Limits, MetadataStore, Result};
use crate::delegation::{self, Found};
use crate::metadata::{
    DelegatedRole, Delegations, MetaFile, Metadata, Role, Root, TargetFile, Targets,
};
use crate::trusted::{Origin, TimestampUpdate, TrustedSet};
use crate::{expiry, KeyId, PublicKey};

/// Directory of the metadata files in a repository.
const METADATA_DIR: &str = "metadata";

/// The versions trusted after a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub root: u64,
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
}

/// What a successful refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// The fixed update start time expiry was checked against (5.1 with the secure-time
    /// rule); recorded as the store's last trusted time.
    pub reference_time: DateTime<Utc>,
    /// The versions now trusted.
    pub versions: Versions,
    /// New root versions accepted (and persisted).
    pub new_roots: u32,
    /// The timestamp or snapshot keys changed, so the cached timestamp and snapshot were
    /// dropped before use (fast-forward recovery, 5.3.11).
    pub fast_forward_recovery: bool,
    /// Metadata was written: the repository changed since the last refresh.
    pub changed: bool,
}

/// A TUF client over one metadata store and one repository.
pub struct Client {
    store: MetadataStore,
    transport: Box<dyn Transport>,
    limits: Limits,
    /// The metadata of the last successful refresh; `None` before one, or after a failure.
    trusted: Option<TrustedSet>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.store)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(store: MetadataStore, transport: impl Transport + 'static, limits: Limits) -> Self {
        Client {
            store,
            transport: Box::new(transport),
            limits,
            trusted: None,
        }
    }

    pub fn store(&self) -> &MetadataStore {
        &self.store
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The metadata trusted by the last successful refresh.
    pub fn trusted(&self) -> Option<&TrustedSet> {
        self.trusted.as_ref()
    }

    /// Updates root, timestamp, snapshot and targets (5.1-5.6). `now` is the system clock;
    /// expiry is checked at `max(now, last trusted time)`. On failure the previous trusted
    /// metadata stays in the store and nothing can be downloaded until a refresh succeeds.
    pub fn refresh(&mut self, now: DateTime<Utc>) -> Result<Refreshed> {
        self.trusted = None;
        let reference_time = fix_time(&self.store, now)?;
        let set = load_trusted_root(&self.store, reference_time)?;
        let mut run = Run {
            store: &self.store,
            transport: self.transport.as_ref(),
            limits: self.limits,
            set,
            changed: false,
        };
        let roots = run.update_root()?;
        run.update_timestamp()?;
        run.update_snapshot()?;
        run.update_targets()?;
        let versions = run.versions()?;
        let changed = run.changed;
        self.store.raise_trusted_time(reference_time)?;
        self.trusted = Some(run.set);
        Ok(Refreshed {
            reference_time,
            versions,
            new_roots: roots.new_roots,
            fast_forward_recovery: roots.rotated,
            changed,
        })
    }

    /// Every target of the trusted top-level targets metadata.
    pub fn targets(&self) -> Result<&BTreeMap<String, TargetFile>> {
        Ok(&self.top_level_targets()?.signed.targets)
    }

    /// The signed description of target `name` (5.6.7), or `None` if no role lists it.
    pub fn target(&self, name: &str) -> Result<Option<TargetFile>> {
        Ok(self.find_target(name)?.map(|found| found.target))
    }

    /// Searches target `name` in the top-level targets and its delegations (5.6.7), in the
    /// order of [`crate::delegation`], fetching each delegated role it visits: the copy in
    /// the store when it is the one the snapshot names and still verifies, else
    /// `{version}.{role}.json` (with consistent snapshots) read up to the length the snapshot
    /// gives, or [`Limits::max_targets_size`]. Verified delegated metadata is kept in the
    /// store as `ROLE.json` (the role name percent-encoded where needed). A delegated role
    /// that fails verification ends the search with an error. Nothing verified is held in
    /// memory between lookups: a role is checked against the delegation being searched each
    /// time it is reached, so a role two delegators name never carries one's trust into the
    /// other's search path.
    pub fn find_target(&self, name: &str) -> Result<Option<Found>> {
        let set = self.trusted.as_ref().ok_or(Error::NotRefreshed)?;
        let top = set.targets().ok_or(Error::NotRefreshed)?;
        delegation::search(
            &top.signed,
            name,
            self.limits.max_delegations,
            |role, delegations| self.load_delegated(set, role, delegations),
            |_| {},
        )
    }

    fn load_delegated(
        &self,
        set: &TrustedSet,
        role: &DelegatedRole,
        delegations: &Delegations,
    ) -> Result<Targets> {
        let stem = delegation::role_file_stem(&role.name);
        if let Some(cached) = self.store.read_delegated(&stem)? {
            if let Ok(md) = set.verify_delegated(&cached, role, delegations) {
                return Ok(md.signed);
            }
        }
        let file = format!("{}.json", role.name);
        let entry = set
            .snapshot()
            .and_then(|s| s.signed.meta.get(&file))
            .ok_or_else(|| {
                refused(
                    Role::Snapshot,
                    "the trusted snapshot",
                    crate::Error::Invalid {
                        role: Role::Snapshot,
                        why: format!("it has no entry for {file}, a delegated role"),
                    },
                )
            })?;
        let path = if set.root().signed.consistent_snapshot() {
            metadata_path(&format!("{}.{stem}.json", entry.version))
        } else {
            metadata_path(&format!("{stem}.json"))
        };
        let cap = entry.length.unwrap_or(self.limits.max_targets_size);
        let what = format!("delegated targets metadata {}", role.name);
        let bytes = fetch_required(self.transport.as_ref(), &path, cap, &what)?;
        let md = set
            .verify_delegated(&bytes, role, delegations)
            .map_err(|source| refused(Role::Targets, &path, source))?;
        self.store.write_delegated(&stem, &bytes)?;
        Ok(md.signed)
    }

    /// The repository path of target `name`: `targets/{digest}.{name}` with consistent
    /// snapshots (the sha256, or the sha512 when it is the only hash listed). Fails for a
    /// name that is not a safe path or a target without a supported hash.
    pub fn target_path(&self, name: &str) -> Result<String> {
        let info = self.known_target(name)?;
        self.path_of(name, &info)
    }

    /// Streams target `name` into `dest`: at most its signed length is written, and success
    /// is reported only when the length and every listed sha256 and sha512 matched (5.7). On error
    /// `dest` may hold part of the bytes and must not be used.
    pub fn download_target(&self, name: &str, dest: &mut dyn Write) -> Result<u64> {
        let info = self.known_target(name)?;
        self.download_found(name, &info, dest)
    }

    /// [`Client::download_target`] of a target already searched for (5.6.7 done once).
    fn download_found(&self, name: &str, info: &TargetFile, dest: &mut dyn Write) -> Result<u64> {
        let path = self.path_of(name, info)?;
        let mut src = self
            .transport
            .fetch(&path, info.length)
            .map_err(|source| match source {
                TransportError::NotFound { .. } => Error::Missing {
                    what: format!("target {name}"),
                    path: path.clone(),
                },
                source => Error::Fetch {
                    what: format!("target {name}"),
                    path: path.clone(),
                    source,
                },
            })?;
        copy_verified(&mut src, dest, info, name, &path)
    }

    /// The verified bytes of a small target (a chunk index, for instance), refused above
    /// [`Limits::max_target_in_memory`].
    pub fn fetch_target_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let info = self.known_target(name)?;
        if info.length > self.limits.max_target_in_memory {
            return Err(Error::TooLarge {
                what: format!("target {name} (held in memory)"),
                path: self.path_of(name, &info)?,
                limit: self.limits.max_target_in_memory,
            });
        }
        let mut bytes = Vec::new();
        self.download_found(name, &info, &mut bytes)?;
        Ok(bytes)
    }

    fn top_level_targets(&self) -> Result<&Metadata<Targets>> {
        self.trusted
            .as_ref()
            .and_then(TrustedSet::targets)
            .ok_or(Error::NotRefreshed)
    }

    fn known_target(&self, name: &str) -> Result<TargetFile> {
        self.target(name)?.ok_or_else(|| Error::UnknownTarget {
            name: name.to_string(),
        })
    }

    fn path_of(&self, name: &str, info: &TargetFile) -> Result<String> {
        let target = TargetName::new(name)?;
        let consistent = self
            .trusted
            .as_ref()
            .is_some_and(|s| s.root().signed.consistent_snapshot());
        let digest = info.path_digest(name).map_err(|source| Error::Target {
            name: name.to_string(),
            path: target.repository_path(None),
            source: Box::new(source),
        })?;
        Ok(target.repository_path(consistent.then_some(digest.as_str())))
    }
}

/// 5.1: the fixed update start time, never before the last trusted time (secure time).
fn fix_time(store: &MetadataStore, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    Ok(secure_time::reference_time(now, store.last_trusted_time()?))
}

/// 5.2: the trusted root from the store, signed by a threshold of its own keys.
fn load_trusted_root(store: &MetadataStore, reference_time: DateTime<Utc>) -> Result<TrustedSet> {
    let path = store.path(Role::Root);
    let bytes = store
        .read(Role::Root)?
        .ok_or_else(|| Error::NotInitialised {
            dir: store.dir().to_path_buf(),
        })?;
    TrustedSet::new(&bytes, reference_time).map_err(|source| Error::TrustedRoot {
        path,
        source: Box::new(source),
    })
}

/// One refresh in progress.
struct Run<'a> {
    store: &'a MetadataStore,
    transport: &'a dyn Transport,
    limits: Limits,
    set: TrustedSet,
    /// A timestamp, snapshot or targets file was verified and written in this run.
    changed: bool,
}

/// What the root step did.
struct RootUpdate {
    new_roots: u32,
    /// Timestamp or snapshot keys changed (5.3.11).
    rotated: bool,
}

impl Run<'_> {
    /// 5.3: root N+1, N+2, ... until the repository has none (or the rotation cap), each
    /// signed by a threshold of the previous root's keys and of its own, each persisted.
    fn update_root(&mut self) -> Result<RootUpdate> {
        let mut update = RootUpdate {
            new_roots: 0,
            rotated: false,
        };
        while update.new_roots < self.limits.max_root_rotations {
            let Some(next) = self.set.root().signed.version.checked_add(1) else {
                break;
            };
            // 5.3.3: versioned names whether or not consistent snapshots are used.
            let path = metadata_path(&format!("{next}.root.json"));
            let fetched = fetch_capped(
                self.transport,
                &path,
                self.limits.max_root_size,
                "root metadata",
            )?;
            let Some(bytes) = fetched else {
                break;
            };
            let previous = self.set.root().signed.clone();
            // 5.3.4-5.3.7
            self.set
                .update_root(&bytes)
                .map_err(|source| refused(Role::Root, &path, source))?;
            // 5.3.11, done per root and before persisting it so that neither a later
            // failure nor a crash can leave a root with new keys next to a timestamp or
            // snapshot whose versions the replaced keys may have inflated (fast-forward).
            let root = &self.set.root().signed;
            if [Role::Timestamp, Role::Snapshot]
                .into_iter()
                .any(|role| role_keys(&previous, role) != role_keys(root, role))
            {
                self.store.remove(Role::Timestamp)?;
                self.store.remove(Role::Snapshot)?;
                update.rotated = true;
            }
            // 5.3.8
            self.store.write(Role::Root, &bytes)?;
            update.new_roots += 1;
        }
        // 5.3.10: the final root must not have expired (freeze attack).
        let root = &self.set.root().signed;
        expiry::check(Role::Root, root.expires, self.set.reference_time()).map_err(|source| {
            refused(
                Role::Root,
                &self.store.path(Role::Root).display().to_string(),
                source,
            )
        })?;
        Ok(update)
    }

    /// 5.4: the cached timestamp as the rollback floor, then `timestamp.json`, read up to
    /// [`Limits::max_timestamp_size`].
    fn update_timestamp(&mut self) -> Result<()> {
        if let Some(cached) = self.store.read(Role::Timestamp)? {
            // A cached file that no longer verifies is not trusted: as if absent.
            self.set.update_timestamp(&cached, Origin::Cached).ok();
        }
        let path = metadata_path("timestamp.json");
        let bytes = fetch_required(
            self.transport,
            &path,
            self.limits.max_timestamp_size,
            "timestamp metadata",
        )?;
        let update = self
            .set
            .update_timestamp(&bytes, Origin::Remote)
            .map_err(|source| refused(Role::Timestamp, &path, source))?;
        match update {
            TimestampUpdate::New => self.persist(Role::Timestamp, &bytes)?,
            // 5.4.3.1: the same version; the cached one stays in use and must be unexpired.
            TimestampUpdate::Unchanged => {
                let expires = self.timestamp_entry()?.1;
                expiry::check(Role::Timestamp, expires, self.set.reference_time())
                    .map_err(|source| refused(Role::Timestamp, &path, source))?;
            }
        }
        Ok(())
    }

    /// 5.5: the cached snapshot as the rollback floor (reused when it is the one the
    /// timestamp names), else `{version}.snapshot.json` read up to the length the timestamp
    /// gives, or [`Limits::max_snapshot_size`].
    fn update_snapshot(&mut self) -> Result<()> {
        let (entry, _) = self.timestamp_entry()?;
        if let Some(cached) = self.store.read(Role::Snapshot)? {
            let loaded = self.set.update_snapshot(&cached, Origin::Cached).is_ok();
            if loaded && self.is_final_snapshot(&entry, &cached) {
                // 5.5.6 for the snapshot kept in use.
                return self.check_snapshot_expiry();
            }
        }
        let path = self.versioned_path(Role::Snapshot, entry.version);
        let cap = entry.length.unwrap_or(self.limits.max_snapshot_size);
        let bytes = fetch_required(self.transport, &path, cap, "snapshot metadata")?;
        self.set
            .update_snapshot(&bytes, Origin::Remote)
            .map_err(|source| refused(Role::Snapshot, &path, source))?;
        self.persist(Role::Snapshot, &bytes)?;
        Ok(())
    }

    /// 5.6: the cached targets when they are the ones the snapshot names (checked exactly as
    /// a download), else `{version}.targets.json` read up to the length the snapshot gives,
    /// or [`Limits::max_targets_size`].
    fn update_targets(&mut self) -> Result<()> {
        let entry = self
            .set
            .snapshot()
            .ok_or_else(|| out_of_order(Role::Targets, "no snapshot is trusted yet"))?
            .signed
            .targets_meta()
            .map_err(|source| refused(Role::Snapshot, "the trusted snapshot", source))?
            .clone();
        if let Some(cached) = self.store.read(Role::Targets)? {
            if self.set.update_targets(&cached).is_ok() {
                return Ok(());
            }
        }
        let path = self.versioned_path(Role::Targets, entry.version);
        let cap = entry.length.unwrap_or(self.limits.max_targets_size);
        let bytes = fetch_required(self.transport, &path, cap, "targets metadata")?;
        self.set
            .update_targets(&bytes)
            .map_err(|source| refused(Role::Targets, &path, source))?;
        self.persist(Role::Targets, &bytes)
    }

    /// Writes `role` as soon as it verified: it is the trusted one from now on, whatever
    /// happens to the roles after it.
    fn persist(&mut self, role: Role, bytes: &[u8]) -> Result<()> {
        self.store.write(role, bytes)?;
        self.changed = true;
        Ok(())
    }

    fn versions(&self) -> Result<Versions> {
        let missing = || out_of_order(Role::Targets, "the refresh ended without targets");
        Ok(Versions {
            root: self.set.root().signed.version,
            timestamp: self.set.timestamp().ok_or_else(missing)?.signed.version,
            snapshot: self.set.snapshot().ok_or_else(missing)?.signed.version,
            targets: self.set.targets().ok_or_else(missing)?.signed.version,
        })
    }

    /// The snapshot entry of the trusted timestamp, and the timestamp's expiry.
    fn timestamp_entry(&self) -> Result<(MetaFile, DateTime<Utc>)> {
        let timestamp = self
            .set
            .timestamp()
            .ok_or_else(|| out_of_order(Role::Snapshot, "no timestamp is trusted yet"))?;
        let entry = timestamp
            .signed
            .snapshot_meta()
            .map_err(|source| refused(Role::Timestamp, "the trusted timestamp", source))?;
        Ok((entry.clone(), timestamp.signed.expires))
    }

    /// Whether the trusted (cached) snapshot is the one `entry` names: version, and the
    /// length and hashes where given.
    fn is_final_snapshot(&self, entry: &MetaFile, bytes: &[u8]) -> bool {
        self.set
            .snapshot()
            .is_some_and(|s| s.signed.version == entry.version)
            && entry.check_bytes("snapshot metadata", bytes).is_ok()
    }

    fn check_snapshot_expiry(&self) -> Result<()> {
        let path = self.store.path(Role::Snapshot).display().to_string();
        let snapshot = self
            .set
            .snapshot()
            .ok_or_else(|| out_of_order(Role::Snapshot, "no snapshot is trusted yet"))?;
        expiry::check(
            Role::Snapshot,
            snapshot.signed.expires,
            self.set.reference_time(),
        )
        .map_err(|source| refused(Role::Snapshot, &path, source))
    }

    /// `metadata/{version}.{role}.json` with consistent snapshots (5.3.12), else
    /// `metadata/{role}.json`.
    fn versioned_path(&self, role: Role, version: u64) -> String {
        if self.set.root().signed.consistent_snapshot() {
            metadata_path(&format!("{version}.{role}.json"))
        } else {
            metadata_path(&format!("{role}.json"))
        }
    }
}

fn metadata_path(name: &str) -> String {
    format!("{METADATA_DIR}/{name}")
}

/// The keys (by id, with their key objects) and threshold `root` gives `role`.
type RoleKeySet<'a> = Option<(BTreeMap<&'a KeyId, Option<&'a PublicKey>>, u64)>;

fn role_keys(root: &Root, role: Role) -> RoleKeySet<'_> {
    let keys = root.role_keys(role).ok()?;
    let ids: BTreeSet<&KeyId> = keys.keyids.iter().collect();
    Some((
        ids.into_iter().map(|id| (id, root.keys.get(id))).collect(),
        keys.threshold,
    ))
}

fn refused(role: Role, path: &str, source: crate::Error) -> Error {
    Error::Metadata {
        role,
        path: path.to_string(),
        source: Box::new(source),
    }
}

fn out_of_order(role: Role, why: &'static str) -> Error {
    Error::Metadata {
        role,
        path: "(none)".to_string(),
        source: Box::new(crate::Error::OutOfOrder { role, why }),
    }
}
