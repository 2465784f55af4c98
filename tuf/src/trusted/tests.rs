use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::keys::SigningKey;
use crate::metadata::{MetaFile, RoleKeys};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    t("2025-06-01T00:00:00Z")
}

fn later() -> DateTime<Utc> {
    t("2030-01-01T00:00:00Z")
}

/// Keys of the four roles, one each.
struct Keys {
    root: SigningKey,
    targets: SigningKey,
    snapshot: SigningKey,
    timestamp: SigningKey,
}

impl Keys {
    fn new(seed: u8) -> Self {
        Keys {
            root: SigningKey::from_seed(&[seed; 32]),
            targets: SigningKey::from_seed(&[seed + 1; 32]),
            snapshot: SigningKey::from_seed(&[seed + 2; 32]),
            timestamp: SigningKey::from_seed(&[seed + 3; 32]),
        }
    }

    fn of(&self, role: Role) -> &SigningKey {
        match role {
            Role::Root => &self.root,
            Role::Targets => &self.targets,
            Role::Snapshot => &self.snapshot,
            Role::Timestamp => &self.timestamp,
        }
    }

    fn root(&self, version: u64, expires: DateTime<Utc>) -> Root {
        let keys = Role::ALL
            .into_iter()
            .map(|r| (self.of(r).key_id().clone(), self.of(r).public().clone()))
            .collect();
        let roles = Role::ALL
            .into_iter()
            .map(|r| {
                let rk = RoleKeys {
                    keyids: vec![self.of(r).key_id().clone()],
                    threshold: 1,
                    extra: BTreeMap::new(),
                };
                (r, rk)
            })
            .collect();
        Root::new(version, expires, keys, roles)
    }
}

/// Bytes of one repository state: targets, snapshot and timestamp at the given versions.
struct State {
    targets: Vec<u8>,
    snapshot: Vec<u8>,
    timestamp: Vec<u8>,
}

fn state(
    keys: &Keys,
    targets_v: u64,
    snapshot_v: u64,
    timestamp_v: u64,
    expires: DateTime<Utc>,
) -> State {
    let targets = Metadata::sign(Targets::new(targets_v, expires), &[&keys.targets])
        .unwrap()
        .to_bytes()
        .unwrap();
    let snapshot = Metadata::sign(
        Snapshot::new(snapshot_v, expires, MetaFile::of_bytes(targets_v, &targets)),
        &[&keys.snapshot],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let timestamp = Metadata::sign(
        Timestamp::new(
            timestamp_v,
            expires,
            MetaFile::of_bytes(snapshot_v, &snapshot),
        ),
        &[&keys.timestamp],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    State {
        targets,
        snapshot,
        timestamp,
    }
}

fn root_bytes(root: Root, signers: &[&SigningKey]) -> Vec<u8> {
    Metadata::sign(root, signers).unwrap().to_bytes().unwrap()
}

/// A set trusting root 1 of `keys` and the given state.
fn trusting(keys: &Keys, s: &State) -> TrustedSet {
    let mut set =
        TrustedSet::new(&root_bytes(keys.root(1, later()), &[&keys.root]), now()).unwrap();
    set.update_timestamp(&s.timestamp, Origin::Remote).unwrap();
    set.update_snapshot(&s.snapshot, Origin::Remote).unwrap();
    set.update_targets(&s.targets).unwrap();
    set
}

#[test]
fn python_tuf_repository_is_accepted() {
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/data/python-tuf/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let mut set = TrustedSet::new(&fixture("1.root.json"), now()).unwrap();
    set.update_timestamp(&fixture("timestamp.json"), Origin::Remote)
        .unwrap();
    set.update_snapshot(&fixture("1.snapshot.json"), Origin::Remote)
        .unwrap();
    set.update_targets(&fixture("1.targets.json")).unwrap();
    let target = &set.targets().unwrap().signed.targets["kiosk-1.bundle"];
    target
        .check_bytes("kiosk-1.bundle", &fixture("kiosk-1.bundle"))
        .unwrap();
}

#[test]
fn a_full_update_and_an_unchanged_one() {
    let keys = Keys::new(1);
    let s1 = state(&keys, 1, 1, 1, later());
    let mut set = trusting(&keys, &s1);
    assert_eq!(set.targets().unwrap().signed.version, 1);
    // The next run: cached state first, then the same remote timestamp.
    let mut next =
        TrustedSet::new(&root_bytes(keys.root(1, later()), &[&keys.root]), now()).unwrap();
    next.update_timestamp(&s1.timestamp, Origin::Cached)
        .unwrap();
    assert_eq!(
        next.update_timestamp(&s1.timestamp, Origin::Remote)
            .unwrap(),
        TimestampUpdate::Unchanged
    );
    // Updating a root after the timestamp is refused.
    let err = set
        .update_root(&root_bytes(keys.root(2, later()), &[&keys.root]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_of_timestamp_snapshot_or_targets_is_refused() {
    let keys = Keys::new(1);
    let current = state(&keys, 5, 5, 5, later());
    let root = root_bytes(keys.root(1, later()), &[&keys.root]);

    // An older timestamp.
    let mut set = TrustedSet::new(&root, now()).unwrap();
    set.update_timestamp(&current.timestamp, Origin::Cached)
        .unwrap();
    let old = state(&keys, 4, 4, 4, later());
    let err = set
        .update_timestamp(&old.timestamp, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                role: Role::Timestamp,
                trusted: 5,
                new: 4
            }
        ),
        "{err}"
    );

    // A newer timestamp naming an older snapshot.
    let replay = state(&keys, 4, 4, 6, later());
    let err = set
        .update_timestamp(&replay.timestamp, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                role: Role::Snapshot,
                trusted: 5,
                new: 4
            }
        ),
        "{err}"
    );

    // A newer snapshot naming older targets, after the cached snapshot as the floor.
    let next = state(&keys, 3, 6, 6, later());
    let mut set = TrustedSet::new(&root, now()).unwrap();
    set.update_timestamp(&current.timestamp, Origin::Cached)
        .unwrap();
    set.update_timestamp(&next.timestamp, Origin::Remote)
        .unwrap();
    set.update_snapshot(&current.snapshot, Origin::Cached)
        .unwrap();
    let err = set
        .update_snapshot(&next.snapshot, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                role: Role::Targets,
                trusted: 5,
                new: 3
            }
        ),
        "{err}"
    );
    // Without a newer snapshot, the cached one cannot stand for the one the timestamp names.
    let err = set.update_targets(&current.targets).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                role: Role::Snapshot,
                expected: 6,
                found: 5
            }
        ),
        "{err}"
    );
    // A remote snapshot of another version than the timestamp names.
    let mut set = TrustedSet::new(&root, now()).unwrap();
    let lying = Metadata::sign(
        Timestamp::new(7, later(), MetaFile::of_bytes(8, &current.snapshot)),
        &[&keys.timestamp],
    )
    .unwrap();
    set.update_timestamp(&lying.to_bytes().unwrap(), Origin::Remote)
        .unwrap();
    let err = set
        .update_snapshot(&current.snapshot, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                role: Role::Snapshot,
                expected: 8,
                found: 5
            }
        ),
        "{err}"
    );
}

#[test]
fn mixed_states_are_refused() {
    let keys = Keys::new(1);
    let a = state(&keys, 1, 1, 1, later());
    let b = state(&keys, 2, 2, 2, later());
    let root = root_bytes(keys.root(1, later()), &[&keys.root]);
    // Timestamp of b with snapshot of a: length/hash or version mismatch.
    let mut set = TrustedSet::new(&root, now()).unwrap();
    set.update_timestamp(&b.timestamp, Origin::Remote).unwrap();
    let err = set
        .update_snapshot(&a.snapshot, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch { .. } | Error::HashMismatch { .. }
        ),
        "{err}"
    );
    // Snapshot of b with targets of a.
    set.update_snapshot(&b.snapshot, Origin::Remote).unwrap();
    let err = set.update_targets(&a.targets).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch { .. } | Error::HashMismatch { .. }
        ),
        "{err}"
    );
    set.update_targets(&b.targets).unwrap();
}

#[test]
fn expired_metadata_is_refused_and_cached_expired_metadata_is_only_a_floor() {
    let keys = Keys::new(1);
    let soon = now() + TimeDelta::seconds(1);
    let root = root_bytes(keys.root(1, later()), &[&keys.root]);

    let expired = state(&keys, 1, 1, 1, now());
    let mut set = TrustedSet::new(&root, now()).unwrap();
    let err = set
        .update_timestamp(&expired.timestamp, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    // Cached and expired: trusted as a floor, but nothing is built on it.
    set.update_timestamp(&expired.timestamp, Origin::Cached)
        .unwrap();
    let err = set
        .update_snapshot(&expired.snapshot, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );

    // Expired targets behind valid timestamp and snapshot.
    let targets = Metadata::sign(Targets::new(1, now()), &[&keys.targets])
        .unwrap()
        .to_bytes()
        .unwrap();
    let snapshot = Metadata::sign(
        Snapshot::new(1, soon, MetaFile::of_bytes(1, &targets)),
        &[&keys.snapshot],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let timestamp = Metadata::sign(
        Timestamp::new(1, soon, MetaFile::of_bytes(1, &snapshot)),
        &[&keys.timestamp],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let mut set = TrustedSet::new(&root, now()).unwrap();
    set.update_timestamp(&timestamp, Origin::Remote).unwrap();
    set.update_snapshot(&snapshot, Origin::Remote).unwrap();
    let err = set.update_targets(&targets).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: Role::Targets,
                ..
            }
        ),
        "{err}"
    );

    // An expired final root stops the update (freeze attack); a newer root renews it.
    let old_root = root_bytes(keys.root(1, now()), &[&keys.root]);
    let fresh = state(&keys, 1, 1, 1, later());
    let mut set = TrustedSet::new(&old_root, now()).unwrap();
    let err = set
        .update_timestamp(&fresh.timestamp, Origin::Remote)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );
    set.update_root(&root_bytes(keys.root(2, later()), &[&keys.root]))
        .unwrap();
    set.update_timestamp(&fresh.timestamp, Origin::Remote)
        .unwrap();
}

#[test]
fn recovery_after_a_timestamp_key_rotation() {
    let old = Keys::new(1);
    // The attacker who held the old timestamp key inflated the timestamp version.
    let inflated = state(&old, 1, 1, 1000, later());
    let cached_root = root_bytes(old.root(1, later()), &[&old.root]);
    let mut set = trusting(&old, &inflated);
    assert_eq!(set.timestamp().unwrap().signed.version, 1000);
    drop(set);

    // Root 2 replaces the timestamp key; the repository restarts at timestamp version 2.
    let new_timestamp = SigningKey::from_seed(&[99; 32]);
    let mut rotated = old.root(2, later());
    rotated.keys.insert(
        new_timestamp.key_id().clone(),
        new_timestamp.public().clone(),
    );
    rotated.roles.get_mut("timestamp").unwrap().keyids = vec![new_timestamp.key_id().clone()];
    let root2 = root_bytes(rotated, &[&old.root]);
    let keys2 = Keys {
        timestamp: new_timestamp,
        ..Keys::new(1)
    };
    let fresh = state(&keys2, 1, 1, 2, later());

    set = TrustedSet::new(&cached_root, now()).unwrap();
    set.update_root(&root2).unwrap();
    // The cached timestamp no longer verifies: not trusted (and to be deleted by the caller).
    let err = set
        .update_timestamp(&inflated.timestamp, Origin::Cached)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        set.update_timestamp(&fresh.timestamp, Origin::Remote)
            .unwrap(),
        TimestampUpdate::New
    );
    set.update_snapshot(&fresh.snapshot, Origin::Remote)
        .unwrap();
    set.update_targets(&fresh.targets).unwrap();
}

#[test]
fn out_of_order_updates_are_refused() {
    let keys = Keys::new(1);
    let s = state(&keys, 1, 1, 1, later());
    let mut set =
        TrustedSet::new(&root_bytes(keys.root(1, later()), &[&keys.root]), now()).unwrap();
    assert!(matches!(
        set.update_snapshot(&s.snapshot, Origin::Remote),
        Err(Error::OutOfOrder {
            role: Role::Snapshot,
            ..
        })
    ));
    assert!(matches!(
        set.update_targets(&s.targets),
        Err(Error::OutOfOrder {
            role: Role::Targets,
            ..
        })
    ));
    let set = trusting(&keys, &s);
    let mut set2 = set.clone();
    assert!(matches!(
        set2.update_timestamp(&s.timestamp, Origin::Remote),
        Err(Error::OutOfOrder {
            role: Role::Timestamp,
            ..
        })
    ));
    // A root that is not self-signed is not trusted to start with.
    let unsigned = root_bytes(keys.root(1, later()), &[&keys.targets]);
    assert!(matches!(
        TrustedSet::new(&unsigned, now()),
        Err(Error::ThresholdNotMet { .. })
    ));
}

/// A set trusting targets that delegate `apps/*` to role `apps` (keys `apps_keys`,
/// `threshold`), with the snapshot naming `apps.json` version `apps_v` of `apps`.
fn delegating(
    keys: &Keys,
    apps_keys: &[&SigningKey],
    threshold: u64,
    apps: &[u8],
    apps_v: u64,
) -> (TrustedSet, crate::Delegations) {
    let delegations = crate::Delegations {
        keys: apps_keys
            .iter()
            .map(|k| (k.key_id().clone(), k.public().clone()))
            .collect(),
        roles: vec![crate::DelegatedRole {
            name: "apps".to_string(),
            keyids: apps_keys.iter().map(|k| k.key_id().clone()).collect(),
            threshold,
            terminating: false,
            paths: Some(vec!["apps/*".to_string()]),
            path_hash_prefixes: None,
            extra: BTreeMap::new(),
        }],
        succinct_roles: None,
        extra: BTreeMap::new(),
    };
    let mut targets = Targets::new(1, later());
    targets.delegations = Some(delegations.clone());
    let targets = Metadata::sign(targets, &[&keys.targets])
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut snapshot = Snapshot::new(1, later(), MetaFile::of_bytes(1, &targets));
    snapshot
        .meta
        .insert("apps.json".to_string(), MetaFile::of_bytes(apps_v, apps));
    let snapshot = Metadata::sign(snapshot, &[&keys.snapshot])
        .unwrap()
        .to_bytes()
        .unwrap();
    let timestamp = Metadata::sign(
        Timestamp::new(1, later(), MetaFile::of_bytes(1, &snapshot)),
        &[&keys.timestamp],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let set = trusting(
        keys,
        &State {
            targets,
            snapshot,
            timestamp,
        },
    );
    (set, delegations)
}

fn apps_bytes(version: u64, expires: DateTime<Utc>, signers: &[&SigningKey]) -> Vec<u8> {
    Metadata::sign(Targets::new(version, expires), signers)
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[test]
fn delegated_role_needs_its_keys_threshold_version_and_time() {
    let keys = Keys::new(1);
    let (a, b, other) = (
        SigningKey::from_seed(&[40; 32]),
        SigningKey::from_seed(&[41; 32]),
        SigningKey::from_seed(&[42; 32]),
    );
    let check = |apps: &[u8], threshold: u64, snapshot_v: u64| {
        let (set, delegations) = delegating(&keys, &[&a, &b], threshold, apps, snapshot_v);
        set.verify_delegated(apps, &delegations.roles[0], &delegations)
    };
    // Signed by one of two keys: enough for threshold 1, not for 2.
    let one = apps_bytes(1, later(), &[&a]);
    assert_eq!(check(&one, 1, 1).unwrap().signed.version, 1);
    let err = check(&one, 2, 1).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
    // The same key twice still counts once.
    let twice = apps_bytes(1, later(), &[&a, &a]);
    let err = check(&twice, 2, 1).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
    assert!(check(&apps_bytes(1, later(), &[&a, &b]), 2, 1).is_ok());
    // A key the delegation does not give the role, even the top-level targets key.
    for wrong in [&other, &keys.targets] {
        let err = check(&apps_bytes(1, later(), &[wrong]), 1, 1).unwrap_err();
        assert!(
            matches!(err, Error::ThresholdNotMet { valid: 0, .. }),
            "{err}"
        );
    }
    // Another version than the snapshot names.
    let err = check(&apps_bytes(2, later(), &[&a]), 1, 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VersionMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    // Expired.
    let err = check(&apps_bytes(1, now(), &[&a]), 1, 1).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    // Bytes other than the snapshot's hash names.
    let (set, delegations) = delegating(&keys, &[&a], 1, &one, 1);
    let other_bytes = apps_bytes(1, later() + chrono::TimeDelta::days(1), &[&a]);
    let err = set
        .verify_delegated(&other_bytes, &delegations.roles[0], &delegations)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch { .. } | Error::HashMismatch { .. }
        ),
        "{err}"
    );
    // A role the snapshot does not list.
    let mut unlisted = delegations.roles[0].clone();
    unlisted.name = "tools".to_string();
    let err = set
        .verify_delegated(&one, &unlisted, &delegations)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                role: Role::Snapshot,
                ..
            }
        ),
        "{err}"
    );
    // Before the top-level targets are trusted.
    let early = TrustedSet::new(&root_bytes(keys.root(1, later()), &[&keys.root]), now()).unwrap();
    let err = early
        .verify_delegated(&one, &delegations.roles[0], &delegations)
        .unwrap_err();
    assert!(matches!(err, Error::OutOfOrder { .. }), "{err}");
}

#[test]
fn delegations_breaking_the_rules_are_refused_when_parsed() {
    let good = serde_json::json!({
        "keys": {},
        "roles": [{"name": "apps", "keyids": [], "threshold": 1, "terminating": false, "paths": ["apps/*"]}]
    });
    let parse = |delegations: serde_json::Value| {
        let mut targets = serde_json::to_value(Targets::new(1, later())).unwrap();
        targets["delegations"] = delegations;
        Metadata::<Targets>::from_parts(targets, Vec::new())
    };
    assert!(parse(good.clone()).is_ok());
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "both",
            Box::new(|d| d["roles"][0]["path_hash_prefixes"] = serde_json::json!(["ab"])),
        ),
        (
            "neither",
            Box::new(|d| {
                d["roles"][0].as_object_mut().unwrap().remove("paths");
            }),
        ),
        (
            "threshold 0",
            Box::new(|d| d["roles"][0]["threshold"] = 0.into()),
        ),
        (
            "top-level name",
            Box::new(|d| d["roles"][0]["name"] = "root".into()),
        ),
        (
            "empty name",
            Box::new(|d| d["roles"][0]["name"] = "".into()),
        ),
        (
            "twice",
            Box::new(|d| {
                let role = d["roles"][0].clone();
                d["roles"].as_array_mut().unwrap().push(role);
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut d = good.clone();
        edit(&mut d);
        let err = parse(d).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    role: Role::Targets,
                    ..
                }
            ),
            "{what}: {err}"
        );
    }
}

#[test]
fn succinct_roles_parse_name_their_bins_as_python_tuf_and_round_trip() {
    let parse = |delegations: serde_json::Value| {
        let mut targets = serde_json::to_value(Targets::new(1, later())).unwrap();
        targets["delegations"] = delegations;
        Metadata::<Targets>::from_parts(targets, Vec::new())
    };
    let succinct = |bit_length: u32| serde_json::json!({"keyids": [], "threshold": 1, "bit_length": bit_length, "name_prefix": "bin"});
    // Bin names from python-tuf 7's SuccinctRoles.get_role_for_target.
    let expected: &[(u32, [&str; 3])] = &[
        (1, ["bin-1", "bin-0", "bin-1"]),
        (2, ["bin-3", "bin-1", "bin-3"]),
        (8, ["bin-d7", "bin-55", "bin-e3"]),
        (13, ["bin-1ae4", "bin-0ab5", "bin-1c76"]),
        (32, ["bin-d726d7c2", "bin-55ae75d9", "bin-e3b0c442"]),
    ];
    for (bits, names) in expected {
        let md = parse(serde_json::json!({"keys": {}, "succinct_roles": succinct(*bits)})).unwrap();
        let delegations = md.signed.delegations.clone().unwrap();
        assert!(delegations.roles.is_empty());
        let bins = delegations.succinct_roles.as_ref().unwrap();
        for (target, name) in ["apps/a.tgz", "file1.txt", ""].iter().zip(names) {
            let role = bins.role_for_target(target);
            assert_eq!(role.name, *name, "{bits} bits, {target:?}");
            assert!(role.terminating);
        }
        // Written back with succinct_roles and no roles.
        let written = serde_json::to_value(&delegations).unwrap();
        assert!(written.get("roles").is_none(), "{written}");
        assert_eq!(written["succinct_roles"]["bit_length"], *bits);
    }
    for (what, delegations) in [
        (
            "bit_length 0",
            serde_json::json!({"keys": {}, "succinct_roles": succinct(0)}),
        ),
        (
            "bit_length 33",
            serde_json::json!({"keys": {}, "succinct_roles": succinct(33)}),
        ),
        ("neither", serde_json::json!({"keys": {}})),
        (
            "both",
            serde_json::json!({"keys": {}, "roles": [], "succinct_roles": succinct(4)}),
        ),
    ] {
        assert!(parse(delegations).is_err(), "{what}");
    }
    // An empty list of roles is still written as one.
    let empty = parse(serde_json::json!({"keys": {}, "roles": []})).unwrap();
    let written = serde_json::to_value(empty.signed.delegations.unwrap()).unwrap();
    assert_eq!(written["roles"], serde_json::json!([]));
}
