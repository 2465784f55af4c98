//! The operations: `init`, `add`, `resign`, `rotate_key`, and `verify`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flipside_contract::release::{FileInfo, Release, TargetCustom, TargetKind, CUSTOM_KEY};
use flipside_contract::rollout::Rollout;
use flipside_tuf::{KeyId, Role, RoleKeys, Root, Signer, SigningKey, TargetFile, Targets};

use crate::freshness::{self, PublishRecord};
use crate::keys::{refs, KeyDir};
use crate::layout::{self, METADATA_DIR, PUBLISHED_FILE, SETTINGS_FILE, TARGETS_DIR};
use crate::lock::{lock, Lock};
use crate::plan::{self, Next, Online, Plan, Signing, Versions};
use crate::publish::{publish, FaultHook, Step};
use crate::release::{read_release, stage, Staged};
use crate::settings::{InitSettings, Policy};
use crate::state::{load, DirSource, Overlay, Trusted};
use crate::Error;

mod amend;
mod detached;
mod prune;
pub use amend::Amend;
pub use detached::RootChange;
pub use prune::{unneeded, FileEntry, Pruned, DEFAULT_GRACE};

/// A key an operation created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub role: Role,
    pub key_id: KeyId,
    pub path: PathBuf,
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// False when there was nothing to do (a release already published, unchanged).
    pub changed: bool,
    /// The role versions now published.
    pub versions: Versions,
    /// Target names added.
    pub added: Vec<String>,
    /// Target names withdrawn.
    pub withdrawn: Vec<String>,
    /// Keys created.
    pub new_keys: Vec<NewKey>,
    /// Key files moved to `retired/` by a rotation.
    pub retired: Vec<PathBuf>,
    /// `add` only: the newest release of the same system and hardware id already published,
    /// when it is above the one just added (devices never install the lower one).
    pub newer: Option<NewerRelease>,
}

/// A published release above the one just added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerRelease {
    pub version: u64,
    pub display_version: String,
}

/// A repository directory, locked against other publishers while this value lives.
pub struct Repository {
    dir: PathBuf,
    _lock: Lock,
    fault: Option<FaultHook>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const ONLINE: [Role; 2] = [Role::Snapshot, Role::Timestamp];

/// What the publisher decides when adding a release.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    /// A deliberate rollback: devices that committed a newer release may install this one, and
    /// committing it lowers their anti-rollback floor ([`Release::allow_rollback`]).
    ///
    /// [`Release::allow_rollback`]: flipside_contract::release::Release::allow_rollback
    pub allow_rollback: bool,
    /// The channels devices take the release in; none: `stable`.
    pub channels: Vec<String>,
    /// The rollout schedule; none: every device at once.
    pub rollout: Option<Rollout>,
}

impl AddOptions {
    /// The custom fields of `release`'s target of `kind` with these publishing decisions.
    fn custom(&self, release: &Release, kind: TargetKind) -> TargetCustom {
        let mut custom = release.target_custom(kind);
        custom.channels = self.channels.clone();
        custom.rollout = self.rollout.clone();
        custom
    }
}

impl Repository {
    /// Opens and locks an existing repository directory.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::NotARepository {
                path: dir.to_path_buf(),
            });
        }
        Ok(Repository {
            dir: dir.to_path_buf(),
            _lock: lock(dir)?,
            fault: None,
        })
    }

    /// Creates the directory if needed, then opens and locks it (for [`Repository::init`]).
    pub fn create(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        Self::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every later publishing step call `hook` first, which may fail it (tests use this
    /// to prove that a failure midway leaves the previous repository intact).
    #[doc(hidden)]
    pub fn set_fault_hook(&mut self, hook: FaultHook) {
        self.fault = Some(hook);
    }

    /// Loads and verifies the whole repository; every role must be unexpired at `now`.
    pub fn verify(&self, now: DateTime<Utc>) -> Result<Trusted, Error> {
        load(&DirSource { repo: &self.dir }, now, &[])
    }

    /// Creates version 1 of every role with the keys in `keys` (generating the ones missing).
    /// Refuses a directory that already holds a repository.
    pub fn init(
        &mut self,
        keys: &KeyDir,
        settings: &InitSettings,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        settings.validate()?;
        for sub in [METADATA_DIR, TARGETS_DIR, SETTINGS_FILE] {
            let path = self.dir.join(sub);
            if path.exists() {
                return Err(Error::AlreadyExists {
                    path: self.dir.clone(),
                });
            }
        }
        let (role_keys, new_keys) = init_keys(keys, settings)?;
        let result = self.init_with(&role_keys, settings, now);
        if result.is_err() {
            // Keys of a repository that was never published are of no use to anyone.
            for key in &new_keys {
                let _ = std::fs::remove_file(&key.path);
            }
        }
        let versions = result?;
        Ok(Published {
            changed: true,
            versions,
            added: Vec::new(),
            withdrawn: Vec::new(),
            new_keys,
            retired: Vec::new(),
            newer: None,
        })
    }

    fn init_with(
        &mut self,
        role_keys: &RoleSigners,
        settings: &InitSettings,
        now: DateTime<Utc>,
    ) -> Result<Versions, Error> {
        let policy = settings.policy();
        let mut keymap = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, keys) in role_keys {
            for key in keys {
                keymap.insert(key.key_id().clone(), key.public_key().clone());
            }
            roles.insert(
                *role,
                RoleKeys {
                    keyids: keys.iter().map(|k| k.key_id().clone()).collect(),
                    threshold: settings.role(*role).threshold,
                    extra: Default::default(),
                },
            );
        }
        let root = Root::new(1, plan::expires(&policy, Role::Root, now)?, keymap, roles);
        let targets = Targets::new(1, plan::expires(&policy, Role::Targets, now)?);
        let signers = |role: Role| role_keys.get(&role).map(|k| refs(k)).unwrap_or_default();
        let next = Next {
            root: Some(Signing::Sign(root, signers(Role::Root))),
            targets: Some(Signing::Sign(targets, signers(Role::Targets))),
            snapshot: Online::Keys(signers(Role::Snapshot)),
            timestamp: Online::Keys(signers(Role::Timestamp)),
        };
        let plan = plan::plan(None, next, &policy, now)?;
        self.self_check(&plan, &BTreeMap::new(), now)?;

        let mut created_dirs = Vec::new();
        for sub in [METADATA_DIR, TARGETS_DIR] {
            let path = self.dir.join(sub);
            std::fs::create_dir(&path).map_err(Error::io(&path))?;
            created_dirs.push(path);
        }
        let mut steps = vec![Step::Write {
            path: self.dir.join(SETTINGS_FILE),
            bytes: policy.to_bytes(),
        }];
        steps.extend(self.metadata_steps(&plan, now));
        let published = publish(steps, &mut self.fault);
        if published.is_err() {
            for dir in created_dirs.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        published.map(|()| plan.versions)
    }

    /// Publishes every file of `RELEASE_DIR/release.json` ([`Release::files`]: the bundle and
    /// index, and the kernel part's bundle and index when there is one) as targets with their
    /// `custom.flipside` fields, in new targets, snapshot and timestamp versions. Every file
    /// published is staged and checked against `release.json` first; one mismatch refuses the
    /// whole release. A release already published with the same content changes nothing; a
    /// name published with other content or other custom fields is refused.
    ///
    /// [`Release::files`]: flipside_contract::release::Release::files
    pub fn add(
        &mut self,
        keys: &KeyDir,
        release_dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        self.add_with(keys, release_dir, AddOptions::default(), now)
    }

    /// [`Repository::add`] with the publisher's [`AddOptions`].
    pub fn add_with(
        &mut self,
        keys: &KeyDir,
        release_dir: &Path,
        options: AddOptions,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let policy = self.policy()?;
        let trusted = load(&DirSource { repo: &self.dir }, now, &ONLINE)?;
        let mut release = read_release(release_dir)?;
        release.allow_rollback |= options.allow_rollback;
        if let Some(rollout) = &options.rollout {
            rollout
                .validate()
                .map_err(|e| Error::Rollout { why: e.to_string() })?;
        }

        let mut fresh: Vec<(TargetKind, &FileInfo)> = Vec::new();
        for (kind, info) in release.files() {
            match trusted.targets.signed.targets.get(&info.name) {
                None => fresh.push((kind, info)),
                Some(existing) => {
                    let same_sha = existing.hashes.get("sha256") == Some(&info.sha256);
                    if !same_sha || existing.length != info.length {
                        return Err(Error::TargetConflict {
                            name: info.name.clone(),
                            existing: existing.hashes.get("sha256").cloned().unwrap_or_default(),
                            new: info.sha256.clone(),
                        });
                    }
                    check_custom(&info.name, existing, &release.target_custom(kind))?;
                }
            }
        }
        if fresh.is_empty() {
            return Ok(unchanged(&trusted));
        }

        let root = &trusted.root().signed;
        let targets_keys = keys.signers(root, Role::Targets)?;
        let snapshot_keys = keys.signers(root, Role::Snapshot)?;
        let timestamp_keys = keys.signers(root, Role::Timestamp)?;

        let targets_dir = self.dir.join(TARGETS_DIR);
        let mut staged: Vec<(String, Staged)> = Vec::new();
        let mut targets = plan::next_targets(&trusted, &policy, now)?;
        for (kind, info) in &fresh {
            let file = stage(release_dir, info, &targets_dir)?;
            let custom = serde_json::json!({ CUSTOM_KEY: options.custom(&release, *kind) });
            targets.targets.insert(
                info.name.clone(),
                TargetFile::new(info.length, &info.sha256, Some(custom)),
            );
            staged.push((layout::target_file(&info.sha256, &info.name), file));
        }

        let next = Next {
            root: None,
            targets: Some(Signing::Sign(targets, refs(&targets_keys))),
            snapshot: Online::Keys(refs(&snapshot_keys)),
            timestamp: Online::Keys(refs(&timestamp_keys)),
        };
        let plan = plan::plan(Some(&trusted), next, &policy, now)?;
        let staged_lengths = staged
            .iter()
            .map(|(name, s)| (name.clone(), s.length))
            .collect();
        self.self_check(&plan, &staged_lengths, now)?;

        let mut steps: Vec<Step> = staged
            .iter()
            .map(|(name, s)| Step::Rename {
                from: s.temp.clone(),
                to: targets_dir.join(name),
            })
            .collect();
        steps.extend(self.metadata_steps(&plan, now));
        publish(steps, &mut self.fault)?;
        Ok(Published {
            changed: true,
            versions: plan.versions,
            added: fresh.iter().map(|(_, info)| info.name.clone()).collect(),
            withdrawn: Vec::new(),
            new_keys: Vec::new(),
            retired: Vec::new(),
            newer: newer_release(
                &trusted.targets.signed,
                &release.name,
                &release.hardware_id,
                release.version,
            ),
        })
    }

    /// Withdraws release `version` of system `name`: every target of it (bundle, index, the
    /// kernel part's) leaves the targets metadata, in new targets, snapshot and timestamp
    /// versions. The files stay under `targets/`, so a device already downloading finishes;
    /// no device chooses the release again. To send devices back to an older release, withdraw
    /// the newer ones and publish the older content as a new release, or with `allow_rollback`
    /// when devices must go below their anti-rollback floor.
    pub fn withdraw(
        &mut self,
        keys: &KeyDir,
        name: &str,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let policy = self.policy()?;
        let trusted = load(&DirSource { repo: &self.dir }, now, &ONLINE)?;
        let mut targets = plan::next_targets(&trusted, &policy, now)?;
        let withdrawn: Vec<String> = targets
            .targets
            .iter()
            .filter(|(_, t)| {
                let custom = t.custom.as_ref().and_then(|c| c.get(CUSTOM_KEY));
                custom
                    .and_then(|c| serde_json::from_value::<TargetCustom>(c.clone()).ok())
                    .is_some_and(|c| c.name == name && c.version == version)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if withdrawn.is_empty() {
            return Err(Error::NoSuchRelease {
                name: name.to_string(),
                version,
            });
        }
        for n in &withdrawn {
            targets.targets.remove(n);
        }
        let versions = self.publish_targets(keys, &trusted, targets, &policy, now)?;
        Ok(Published {
            changed: true,
            versions,
            added: Vec::new(),
            withdrawn,
            new_keys: Vec::new(),
            retired: Vec::new(),
            newer: None,
        })
    }

    /// Signs `targets` (built on `trusted` by [`plan::next_targets`]) with new snapshot and
    /// timestamp versions, checks the result and publishes it.
    fn publish_targets(
        &mut self,
        keys: &KeyDir,
        trusted: &Trusted,
        targets: Targets,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Versions, Error> {
        let root = &trusted.root().signed;
        let targets_keys = keys.signers(root, Role::Targets)?;
        let snapshot_keys = keys.signers(root, Role::Snapshot)?;
        let timestamp_keys = keys.signers(root, Role::Timestamp)?;
        let next = Next {
            root: None,
            targets: Some(Signing::Sign(targets, refs(&targets_keys))),
            snapshot: Online::Keys(refs(&snapshot_keys)),
            timestamp: Online::Keys(refs(&timestamp_keys)),
        };
        let plan = plan::plan(Some(trusted), next, policy, now)?;
        self.self_check(&plan, &BTreeMap::new(), now)?;
        publish(self.metadata_steps(&plan, now), &mut self.fault)?;
        Ok(plan.versions)
    }

    /// Re-signs snapshot and timestamp with new versions and expiry; `roles` may add targets
    /// (needs the offline targets keys) and root (needs the offline root keys).
    pub fn resign(
        &mut self,
        keys: &KeyDir,
        roles: &[Role],
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let policy = self.policy()?;
        let mut renewing: BTreeSet<Role> = roles.iter().copied().collect();
        renewing.extend(ONLINE);
        let renewing: Vec<Role> = renewing.into_iter().collect();
        let trusted = load(&DirSource { repo: &self.dir }, now, &renewing)?;
        let root = &trusted.root().signed;

        let root_keys = if renewing.contains(&Role::Root) {
            keys.signers(root, Role::Root)?
        } else {
            Vec::new()
        };
        let targets_keys = if renewing.contains(&Role::Targets) {
            keys.signers(root, Role::Targets)?
        } else {
            Vec::new()
        };
        let snapshot_keys = keys.signers(root, Role::Snapshot)?;
        let timestamp_keys = keys.signers(root, Role::Timestamp)?;

        let new_root = match renewing.contains(&Role::Root) {
            true => Some(Signing::Sign(
                plan::next_root(&trusted, &policy, now)?,
                refs(&root_keys),
            )),
            false => None,
        };
        let new_targets = match renewing.contains(&Role::Targets) {
            true => Some(Signing::Sign(
                plan::next_targets(&trusted, &policy, now)?,
                refs(&targets_keys),
            )),
            false => None,
        };
        let next = Next {
            root: new_root,
            targets: new_targets,
            snapshot: Online::Keys(refs(&snapshot_keys)),
            timestamp: Online::Keys(refs(&timestamp_keys)),
        };
        let plan = plan::plan(Some(&trusted), next, &policy, now)?;
        self.self_check(&plan, &BTreeMap::new(), now)?;
        let steps = self.metadata_steps(&plan, now);
        publish(steps, &mut self.fault)?;
        Ok(Published {
            changed: true,
            versions: plan.versions,
            added: Vec::new(),
            withdrawn: Vec::new(),
            new_keys: Vec::new(),
            retired: Vec::new(),
            newer: None,
        })
    }

    /// Replaces every key of `role` with as many new keys (same threshold): a new root signed
    /// by a threshold of the current root keys, and also of the new root keys when root
    /// rotates; the rotated role is then re-signed with its new keys (snapshot and timestamp
    /// always are). Old key files move to `KEYS/retired/<role>/`.
    pub fn rotate_key(
        &mut self,
        keys: &KeyDir,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let policy = self.policy()?;
        let mut renewing = vec![Role::Root, Role::Snapshot, Role::Timestamp];
        if role == Role::Targets {
            renewing.push(Role::Targets);
        }
        let trusted = load(&DirSource { repo: &self.dir }, now, &renewing)?;
        let current = &trusted.root().signed;
        let old_ids: Vec<KeyId> = current
            .role_keys(role)
            .map_err(|source| Error::Produce { role, source })?
            .keyids
            .clone();

        let root_keys = keys.signers(current, Role::Root)?;
        let kept = |r: Role| -> Result<Vec<Box<dyn Signer>>, Error> {
            if r == role {
                Ok(Vec::new())
            } else {
                keys.signers(current, r)
            }
        };
        let snapshot_keys = kept(Role::Snapshot)?;
        let timestamp_keys = kept(Role::Timestamp)?;
        let old_files: Vec<PathBuf> = keys
            .read_signers(role)?
            .into_iter()
            .filter(|f| old_ids.contains(f.signer.key_id()))
            .map(|f| f.path)
            .collect();

        let fresh: Vec<SigningKey> = (0..old_ids.len().max(1))
            .map(|_| SigningKey::generate())
            .collect();
        let new_root = rotated_root(&trusted, &policy, role, &fresh, now)?;

        let mut root_signers = refs(&root_keys);
        if role == Role::Root {
            root_signers.extend(fresh.iter().map(|k| k as &dyn Signer));
        }
        let new_targets = match role {
            Role::Targets => Some(Signing::Sign(
                plan::next_targets(&trusted, &policy, now)?,
                fresh.iter().map(|k| k as &dyn Signer).collect(),
            )),
            _ => None,
        };
        let next = Next {
            root: Some(Signing::Sign(new_root, root_signers)),
            targets: new_targets,
            snapshot: Online::Keys(pick(role == Role::Snapshot, &fresh, &snapshot_keys)),
            timestamp: Online::Keys(pick(role == Role::Timestamp, &fresh, &timestamp_keys)),
        };
        let plan = plan::plan(Some(&trusted), next, &policy, now)?;
        self.self_check(&plan, &BTreeMap::new(), now)?;

        // Save the new keys before anything refers to them, and drop them if publishing fails.
        let mut new_keys = Vec::new();
        let saved: Result<(), Error> = fresh.iter().try_for_each(|key| {
            let path = keys.save(role, key)?;
            new_keys.push(NewKey {
                role,
                key_id: key.key_id().clone(),
                path,
            });
            Ok(())
        });
        let published =
            saved.and_then(|()| publish(self.metadata_steps(&plan, now), &mut self.fault));
        if let Err(e) = published {
            for key in &new_keys {
                let _ = std::fs::remove_file(&key.path);
            }
            return Err(e);
        }
        let mut retired = Vec::new();
        for file in old_files {
            retired.push(keys.retire(role, &file)?);
        }
        Ok(Published {
            changed: true,
            versions: plan.versions,
            added: Vec::new(),
            withdrawn: Vec::new(),
            new_keys,
            retired,
            newer: None,
        })
    }

    /// Plans `next` on `trusted`, checks the result and publishes it.
    fn publish_next(
        &mut self,
        trusted: &Trusted,
        next: Next<'_>,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Versions, Error> {
        let plan = plan::plan(Some(trusted), next, policy, now)?;
        self.self_check(&plan, &BTreeMap::new(), now)?;
        publish(self.metadata_steps(&plan, now), &mut self.fault)?;
        Ok(plan.versions)
    }

    /// The expiry periods kept in the repository; the defaults when the file is absent.
    fn policy(&self) -> Result<Policy, Error> {
        let path = self.dir.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Policy::from_slice(&bytes).map_err(|why| Error::Inconsistent { path, why })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Verifies the state the plan would publish, with nothing expired at `now`, then checks
    /// that the clock is not behind the last publish and that every role stays valid past the
    /// safety margin ([`freshness::check`]).
    fn self_check(
        &self,
        plan: &Plan,
        staged: &BTreeMap<String, u64>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let base = DirSource { repo: &self.dir };
        let overlay = Overlay {
            base: &base,
            metadata: plan.files.iter().cloned().collect(),
            targets: staged.clone(),
        };
        let trusted = load(&overlay, now, &[]).map_err(|e| Error::SelfCheck {
            source: Box::new(e),
        })?;
        let got = Versions {
            root: trusted.root().signed.version,
            targets: trusted.targets.signed.version,
            snapshot: trusted.snapshot.signed.version,
            timestamp: trusted.timestamp.signed.version,
        };
        if got != plan.versions {
            return Err(Error::SelfCheck {
                source: Box::new(Error::Inconsistent {
                    path: self.dir.clone(),
                    why: format!(
                        "the new state has versions {got:?}, planned {:?}",
                        plan.versions
                    ),
                }),
            });
        }
        freshness::check(self.last_publish()?, &freshness::expiries(&trusted), now)
    }

    /// The record of the last publish; `None` for a repository published before it was kept.
    fn last_publish(&self) -> Result<Option<PublishRecord>, Error> {
        let path = self.dir.join(PUBLISHED_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Inconsistent {
                why: format!("the record of the last publish is malformed ({e}); delete it"),
                path,
            })
    }

    /// Writes the plan's metadata files, then the record of this publish (last: a publish cut
    /// short leaves the older, still lower, bound).
    fn metadata_steps(&self, plan: &Plan, now: DateTime<Utc>) -> Vec<Step> {
        let dir = self.dir.join(METADATA_DIR);
        let mut steps: Vec<Step> = plan
            .files
            .iter()
            .map(|(name, bytes)| Step::Write {
                path: dir.join(name),
                bytes: bytes.clone(),
            })
            .collect();
        let record = PublishRecord { published_at: now };
        steps.push(Step::Write {
            path: self.dir.join(PUBLISHED_FILE),
            bytes: serde_json::to_vec_pretty(&record).expect("a time serializes"),
        });
        steps
    }
}

/// Refuses an already published target whose flipside fields are not `wanted`: the same
/// bytes, but published as part of a different release description.
fn check_custom(name: &str, existing: &TargetFile, wanted: &TargetCustom) -> Result<(), Error> {
    let conflict = |why: String| {
        Err(Error::CustomConflict {
            name: name.to_string(),
            why,
        })
    };
    let Some(value) = existing.custom.as_ref().and_then(|c| c.get(CUSTOM_KEY)) else {
        return conflict(format!("it has no custom.{CUSTOM_KEY}"));
    };
    let mut found: TargetCustom = match serde_json::from_value(value.clone()) {
        Ok(found) => found,
        Err(e) => return conflict(format!("its custom.{CUSTOM_KEY} does not parse: {e}")),
    };
    // Channels and rollout are changed by `amend`, never by adding the release again.
    found.channels = wanted.channels.clone();
    found.rollout = wanted.rollout.clone();
    if found == *wanted {
        return Ok(());
    }
    let why = match (&found.kernel, &wanted.kernel) {
        (None, Some(_)) => "it was published without the kernel part this release has".into(),
        (Some(_), None) => "it was published with a kernel part this release does not have".into(),
        _ => "its release description differs".into(),
    };
    conflict(why)
}

/// The new keys of a rotated role, else the kept ones.
fn pick<'a>(
    rotated: bool,
    fresh: &'a [SigningKey],
    kept: &'a [Box<dyn Signer>],
) -> Vec<&'a dyn Signer> {
    if rotated {
        fresh.iter().map(|k| k as &dyn Signer).collect()
    } else {
        refs(kept)
    }
}

fn unchanged(trusted: &Trusted) -> Published {
    Published {
        changed: false,
        versions: Versions {
            root: trusted.root().signed.version,
            targets: trusted.targets.signed.version,
            snapshot: trusted.snapshot.signed.version,
            timestamp: trusted.timestamp.signed.version,
        },
        added: Vec::new(),
        withdrawn: Vec::new(),
        new_keys: Vec::new(),
        retired: Vec::new(),
        newer: None,
    }
}

/// The newest release of `name` for `hardware_id` in `targets` above `version`, if any. Pure.
fn newer_release(
    targets: &Targets,
    name: &str,
    hardware_id: &str,
    version: u64,
) -> Option<NewerRelease> {
    targets
        .targets
        .values()
        .filter_map(|t| t.custom.as_ref()?.get(CUSTOM_KEY))
        .filter_map(|v| serde_json::from_value::<TargetCustom>(v.clone()).ok())
        .filter(|c| c.name == name && c.hardware_id == hardware_id && c.version > version)
        .max_by_key(|c| c.version)
        .map(|c| NewerRelease {
            version: c.version,
            display_version: c.display_version,
        })
}

/// The next root with `role`'s keys replaced by `fresh` (threshold kept) and keys no role uses
/// any more dropped.
fn rotated_root(
    trusted: &Trusted,
    policy: &Policy,
    role: Role,
    fresh: &[SigningKey],
    now: DateTime<Utc>,
) -> Result<Root, Error> {
    let mut root = plan::next_root(trusted, policy, now)?;
    let entry = root
        .roles
        .get_mut(role.as_str())
        .ok_or_else(|| Error::Produce {
            role,
            source: flipside_tuf::Error::Invalid {
                role: Role::Root,
                why: format!("it lists no keys for the {role} role"),
            },
        })?;
    entry.keyids = fresh.iter().map(|k| k.key_id().clone()).collect();
    for key in fresh {
        root.keys.insert(key.key_id().clone(), key.public().clone());
    }
    let used: BTreeSet<KeyId> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
    Ok(root)
}

/// Signing keys by role.
type RoleSigners = BTreeMap<Role, Vec<Box<dyn Signer>>>;

/// The keys of every role for `init`: those already in `KEYS/<role>/` (key files and token
/// keys), plus new ed25519 key files up to the
/// configured number. A key may serve one role only.
fn init_keys(keys: &KeyDir, settings: &InitSettings) -> Result<(RoleSigners, Vec<NewKey>), Error> {
    let mut by_role = BTreeMap::new();
    let mut seen: BTreeMap<KeyId, Role> = BTreeMap::new();
    for role in Role::ALL {
        let wanted = settings.role(role).keys;
        let existing: Vec<Box<dyn Signer>> = keys
            .read_signers(role)?
            .into_iter()
            .map(|f| f.signer)
            .collect();
        if existing.len() > wanted {
            return Err(Error::Settings {
                why: format!(
                    "{} holds {} {role} keys but the role is to have {wanted}; remove the extra key files or pass --keys-per-role {role}={}",
                    keys.role_dir(role).display(),
                    existing.len(),
                    existing.len()
                ),
            });
        }
        for key in &existing {
            if let Some(other) = seen.insert(key.key_id().clone(), role) {
                return Err(Error::Settings {
                    why: format!(
                        "key {} is in the keys of both {other} and {role}; each role needs its own keys",
                        key.key_id()
                    ),
                });
            }
        }
        by_role.insert(role, (existing, wanted));
    }
    let mut new_keys = Vec::new();
    let mut out = BTreeMap::new();
    for (role, (mut existing, wanted)) in by_role {
        while existing.len() < wanted {
            let key = SigningKey::generate();
            match keys.save(role, &key) {
                Ok(path) => new_keys.push(NewKey {
                    role,
                    key_id: key.key_id().clone(),
                    path,
                }),
                Err(e) => {
                    for k in &new_keys {
                        let _ = std::fs::remove_file(&k.path);
                    }
                    return Err(e);
                }
            }
            existing.push(Box::new(key));
        }
        out.insert(role, existing);
    }
    Ok((out, new_keys))
}
