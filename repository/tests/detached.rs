//! Threshold signing across machines: `prepare`, detached signatures made away from the
//! repository, and `merge`, which publishes only when every threshold is met and otherwise
//! changes nothing.

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use common::{days, listing, now, Fixture};
use flipside_repository::detached::Prepared;
use flipside_repository::{Error, InitSettings, RoleSettings, RootChange};
use flipside_tuf::{Role, Signer, SigningKey};

/// Root with two keys and threshold 2; the root key files moved out of the keys directory
/// (one per signer's machine), as an offline root keeps them.
fn offline_root() -> (Fixture, Vec<PathBuf>) {
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Root,
        RoleSettings {
            keys: 2,
            threshold: 2,
            expiry_days: 365,
        },
    );
    let f = Fixture::with_settings(&settings);
    let away = f.tmp.path().join("offline");
    std::fs::create_dir(&away).unwrap();
    let mut moved = Vec::new();
    for file in f.keys.read_role(Role::Root).unwrap() {
        let to = away.join(file.path.file_name().unwrap());
        std::fs::rename(&file.path, &to).unwrap();
        moved.push(to);
    }
    (f, moved)
}

/// Two hours after the repository was made: every role still valid.
fn later() -> DateTime<Utc> {
    now() + TimeDelta::hours(2)
}

fn write(f: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let path = f.tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `repo sign-detached` on a signer's machine: the prepared file and a key in, a file out.
fn sign(f: &Fixture, prepared: &Path, key: &dyn Signer, name: &str) -> PathBuf {
    let bytes = std::fs::read(prepared).unwrap();
    let p = Prepared::from_slice(prepared, &bytes).unwrap();
    let sig = p.sign(key, now()).unwrap();
    write(f, name, &sig.to_bytes())
}

fn key(path: &Path) -> SigningKey {
    SigningKey::load(path).unwrap()
}

#[test]
fn a_root_renewal_publishes_only_with_the_threshold_and_changes_nothing_before() {
    let (f, root_keys) = offline_root();
    let prepared = f
        .open()
        .prepare(Role::Root, &RootChange::default(), later())
        .unwrap();
    let prepared = write(&f, "root-2.json", &prepared);
    let one = sign(&f, &prepared, &key(&root_keys[0]), "one.sig");
    let two = sign(&f, &prepared, &key(&root_keys[1]), "two.sig");

    let before = listing(&f.repo);
    let err = f
        .open()
        .merge(&f.keys, &prepared, std::slice::from_ref(&one), later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                role: Role::Root,
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("1 of the 2 signatures"), "{err}");
    assert_eq!(
        listing(&f.repo),
        before,
        "a refused merge publishes nothing"
    );

    let published = f
        .open()
        .merge(&f.keys, &prepared, &[one, two], later())
        .unwrap();
    assert_eq!(published.versions.root, 2);
    let trusted = f.open().verify(later()).unwrap();
    assert_eq!(trusted.root().signed.version, 2);
    assert_eq!(trusted.root().signatures.len(), 2);
}

#[test]
fn duplicate_unknown_bad_and_foreign_signatures_are_refused_by_their_kind() {
    let (f, root_keys) = offline_root();
    let prepared = write(
        &f,
        "root-2.json",
        &f.open()
            .prepare(Role::Root, &RootChange::default(), later())
            .unwrap(),
    );
    let one = sign(&f, &prepared, &key(&root_keys[0]), "one.sig");
    let before = listing(&f.repo);

    let err = f
        .open()
        .merge(&f.keys, &prepared, &[one.clone(), one.clone()], later())
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateSignature { .. }), "{err}");

    let targets_key = &f.keys.read_role(Role::Targets).unwrap()[0].key;
    let unknown = sign(&f, &prepared, targets_key, "targets.sig");
    let err = f
        .open()
        .merge(&f.keys, &prepared, &[one.clone(), unknown], later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownSigningKey {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );

    // A signature of the second key over other bytes.
    let text =
        std::fs::read_to_string(sign(&f, &prepared, &key(&root_keys[1]), "two.sig")).unwrap();
    let other = key(&root_keys[1]).sign(b"something else").sig;
    let sig_field = serde_json::from_str::<serde_json::Value>(&text).unwrap()["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = write(&f, "bad.sig", text.replace(&sig_field, &other).as_bytes());
    let err = f
        .open()
        .merge(&f.keys, &prepared, &[one.clone(), bad], later())
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");

    // A signature of another prepared file (a targets renewal).
    let targets = write(
        &f,
        "targets-2.json",
        &f.open()
            .prepare(Role::Targets, &RootChange::default(), later())
            .unwrap(),
    );
    let foreign = sign(&f, &targets, &key(&root_keys[1]), "foreign.sig");
    let err = f
        .open()
        .merge(&f.keys, &prepared, &[one, foreign], later())
        .unwrap_err();
    assert!(matches!(err, Error::SignatureMismatch { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);
}

#[test]
fn a_new_root_key_needs_the_threshold_of_the_old_root_and_of_the_new() {
    let (f, root_keys) = offline_root();
    let new_root_key = SigningKey::generate();
    let change = RootChange {
        keys: [(
            Role::Root,
            vec![
                key(&root_keys[0]).public().clone(),
                new_root_key.public().clone(),
            ],
        )]
        .into(),
        thresholds: [(Role::Root, 2)].into(),
    };
    let prepared = write(
        &f,
        "root-2.json",
        &f.open().prepare(Role::Root, &change, later()).unwrap(),
    );
    let old = [
        sign(&f, &prepared, &key(&root_keys[0]), "old0.sig"),
        sign(&f, &prepared, &key(&root_keys[1]), "old1.sig"),
    ];
    let err = f
        .open()
        .merge(&f.keys, &prepared, &old, later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                authority: "the new root",
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    let new = sign(&f, &prepared, &new_root_key, "new.sig");
    let only_new = [old[0].clone(), new.clone()];
    let err = f
        .open()
        .merge(&f.keys, &prepared, &only_new, later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                authority: "the current root",
                ..
            }
        ),
        "{err}"
    );
    let all = [old[0].clone(), old[1].clone(), new];
    f.open().merge(&f.keys, &prepared, &all, later()).unwrap();
    let root = f.open().verify(later()).unwrap().root().signed.clone();
    assert!(root
        .role_keys(Role::Root)
        .unwrap()
        .keyids
        .contains(new_root_key.key_id()));
}

#[test]
fn rotating_an_online_key_without_the_root_keys_retires_the_old_one() {
    let (f, root_keys) = offline_root();
    let old = f.keys.read_role(Role::Timestamp).unwrap().remove(0);
    let fresh = SigningKey::generate();
    let change = RootChange {
        keys: [(Role::Timestamp, vec![fresh.public().clone()])].into(),
        thresholds: Default::default(),
    };
    let prepared = write(
        &f,
        "root-2.json",
        &f.open().prepare(Role::Root, &change, later()).unwrap(),
    );
    let sigs = [
        sign(&f, &prepared, &key(&root_keys[0]), "a.sig"),
        sign(&f, &prepared, &key(&root_keys[1]), "b.sig"),
    ];
    // Without the new key in the keys directory nothing can sign the new timestamp.
    let err = f
        .open()
        .merge(&f.keys, &prepared, &sigs, later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughKeys {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    f.keys.save(Role::Timestamp, &fresh).unwrap();
    let published = f.open().merge(&f.keys, &prepared, &sigs, later()).unwrap();
    assert_eq!(published.retired.len(), 1);
    assert!(!old.path.exists());
    let trusted = f.open().verify(later()).unwrap();
    assert_eq!(trusted.timestamp.signatures[0].keyid, *fresh.key_id());

    // The revoked key can sign a prepared timestamp, but merge refuses it.
    let ts = write(
        &f,
        "timestamp.json",
        &f.open()
            .prepare(Role::Timestamp, &RootChange::default(), later())
            .unwrap(),
    );
    let revoked = sign(&f, &ts, &old.key, "revoked.sig");
    let err = f
        .open()
        .merge(&f.keys, &ts, &[revoked], later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownSigningKey {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    // The current key can.
    let good = sign(&f, &ts, &fresh, "good.sig");
    let published = f.open().merge(&f.keys, &ts, &[good], later()).unwrap();
    assert_eq!(
        published.versions.timestamp,
        trusted.timestamp.signed.version + 1
    );
    assert_eq!(published.versions.snapshot, trusted.snapshot.signed.version);
}

#[test]
fn prepared_targets_and_snapshot_merge_and_a_stale_one_is_refused() {
    let f = Fixture::new();
    let targets_key = f.keys.read_role(Role::Targets).unwrap().remove(0);
    let prepared = write(
        &f,
        "targets-2.json",
        &f.open()
            .prepare(Role::Targets, &RootChange::default(), later())
            .unwrap(),
    );
    let sig = sign(&f, &prepared, &targets_key.key, "t.sig");
    // Meanwhile another publish made targets version 2.
    let stale = write(&f, "stale.json", &std::fs::read(&prepared).unwrap());
    f.open()
        .merge(&f.keys, &prepared, std::slice::from_ref(&sig), later())
        .unwrap();
    let err = f
        .open()
        .merge(&f.keys, &stale, &[sig], later())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PreparedStale {
                role: Role::Targets,
                ..
            }
        ),
        "{err}"
    );

    let snapshot_key = f.keys.read_role(Role::Snapshot).unwrap().remove(0);
    let prepared = write(
        &f,
        "snapshot.json",
        &f.open()
            .prepare(Role::Snapshot, &RootChange::default(), later())
            .unwrap(),
    );
    let sig = sign(&f, &prepared, &snapshot_key.key, "s.sig");
    let published = f.open().merge(&f.keys, &prepared, &[sig], later()).unwrap();
    assert_eq!(published.versions.targets, 2);
    f.open().verify(later()).unwrap();
}

#[test]
fn expired_prepared_metadata_is_not_signed() {
    let f = Fixture::new();
    let prepared = write(
        &f,
        "timestamp.json",
        &f.open()
            .prepare(Role::Timestamp, &RootChange::default(), now())
            .unwrap(),
    );
    let bytes = std::fs::read(&prepared).unwrap();
    let p = Prepared::from_slice(&prepared, &bytes).unwrap();
    let key = &f.keys.read_role(Role::Timestamp).unwrap()[0].key;
    let err = p.sign(key, days(2)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PreparedExpired {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn root_changes_are_checked_before_anything_is_prepared() {
    let f = Fixture::new();
    let shared = f.keys.read_role(Role::Snapshot).unwrap()[0]
        .key
        .public()
        .clone();
    let change = RootChange {
        keys: [(Role::Timestamp, vec![shared])].into(),
        thresholds: Default::default(),
    };
    let err = f.open().prepare(Role::Root, &change, later()).unwrap_err();
    assert!(
        err.to_string().contains("both snapshot and timestamp"),
        "{err}"
    );
    let change = RootChange {
        keys: Default::default(),
        thresholds: [(Role::Root, 2)].into(),
    };
    let err = f.open().prepare(Role::Root, &change, later()).unwrap_err();
    assert!(
        err.to_string()
            .contains("threshold 2 needs between 1 and its 1 keys"),
        "{err}"
    );
    let change = RootChange {
        keys: Default::default(),
        thresholds: [(Role::Root, 1)].into(),
    };
    let err = f
        .open()
        .prepare(Role::Targets, &change, later())
        .unwrap_err();
    assert!(matches!(err, Error::Settings { .. }), "{err}");
}
