//! The repository operations on real directories: layout, keys, releases, expiry, rotation,
//! corruption, locking, and failures midway.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{days, listing, now, write_release, Fixture};
use flipside_contract::release::{TargetCustom, TargetKind, CUSTOM_KEY};
use flipside_contract::rollout::{Rollout, Wave};
use flipside_repository::{AddOptions, Amend, Error, InitSettings, Repository, RoleSettings};
use flipside_tuf::{Metadata, Role, Root, SigningKey, Targets};

fn meta(f: &Fixture, name: &str) -> Vec<u8> {
    std::fs::read(f.repo.join("metadata").join(name)).unwrap()
}

fn root_of(f: &Fixture, version: u64) -> Metadata<Root> {
    Metadata::from_slice(&meta(f, &format!("{version}.root.json"))).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_version_one_of_every_role_and_private_keys() {
    let f = Fixture::new();
    for name in [
        "1.root.json",
        "root.json",
        "1.targets.json",
        "1.snapshot.json",
        "timestamp.json",
    ] {
        assert!(f.repo.join("metadata").join(name).is_file(), "{name}");
    }
    assert_eq!(meta(&f, "1.root.json"), meta(&f, "root.json"));
    let trusted = f.open().verify(now()).unwrap();
    assert_eq!(trusted.root().signed.version, 1);
    assert!(trusted.targets.signed.targets.is_empty());
    assert_eq!(
        trusted.root().signed.expires,
        days(365),
        "default root expiry"
    );
    assert_eq!(trusted.timestamp.signed.expires, days(1));
    for role in Role::ALL {
        let dir = f.keys.role_dir(role);
        assert_eq!(mode(&dir), 0o700, "{role}");
        let files = f.keys.read_role(role).unwrap();
        assert_eq!(files.len(), 1, "{role}");
        assert_eq!(mode(&files[0].path), 0o600);
        let listed = &trusted.root().signed.role_keys(role).unwrap().keyids;
        assert_eq!(listed, &vec![files[0].key.key_id().clone()]);
    }
    // Every role expires as configured; python-tuf reads the time format.
    let text = String::from_utf8(meta(&f, "timestamp.json")).unwrap();
    assert!(
        text.contains("\"expires\": \"2025-01-02T00:00:00Z\""),
        "{text}"
    );
    assert!(text.contains("\"spec_version\": \"1.0.31\""));
}

#[test]
fn init_refuses_an_existing_repository_and_bad_settings() {
    let f = Fixture::new();
    let before = listing(&f.repo);
    let err = f
        .open()
        .init(&f.keys, &InitSettings::default(), now())
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);

    let g = Fixture::empty();
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Targets,
        RoleSettings {
            keys: 1,
            threshold: 2,
            expiry_days: 90,
        },
    );
    let err = Repository::create(&g.repo)
        .unwrap()
        .init(&g.keys, &settings, now())
        .unwrap_err();
    assert!(matches!(err, Error::Settings { .. }), "{err}");
    assert!(!g.keys.path().exists(), "no keys made for refused settings");
}

#[test]
fn init_uses_existing_keys_and_thresholds() {
    let f = Fixture::empty();
    let existing = SigningKey::generate();
    f.keys.save(Role::Targets, &existing).unwrap();
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Targets,
        RoleSettings {
            keys: 3,
            threshold: 2,
            expiry_days: 30,
        },
    );
    Repository::create(&f.repo)
        .unwrap()
        .init(&f.keys, &settings, now())
        .unwrap();
    let trusted = f.open().verify(now()).unwrap();
    let targets = trusted.root().signed.role_keys(Role::Targets).unwrap();
    assert_eq!(targets.threshold, 2);
    assert_eq!(targets.keyids.len(), 3);
    assert!(targets.keyids.contains(existing.key_id()));
    assert_eq!(trusted.targets.signed.expires, days(30));
    // The expiry period is remembered for later operations.
    let r = f.release(1, b"bundle", b"index");
    f.open().add(&f.keys, &r, days(1)).unwrap();
    let trusted = f.open().verify(days(1)).unwrap();
    assert_eq!(trusted.targets.signed.expires, days(31));
    assert_eq!(trusted.targets.signatures.len(), 3);
}

#[test]
fn add_publishes_bundle_and_index_with_custom_fields() {
    let f = Fixture::new();
    let dir = f.release(7, b"bundle bytes", b"index bytes");
    let published = f.open().add(&f.keys, &dir, now()).unwrap();
    assert!(published.changed);
    assert_eq!(published.added, ["kiosk-7.bundle", "kiosk-7.index"]);
    assert_eq!(
        (
            published.versions.root,
            published.versions.targets,
            published.versions.snapshot,
            published.versions.timestamp
        ),
        (1, 2, 2, 2)
    );
    let release = flipside_repository::release::read_release(&dir).unwrap();
    let targets = Metadata::<Targets>::from_slice(&meta(&f, "2.targets.json")).unwrap();
    for (name, kind, bytes) in [
        ("kiosk-7.bundle", TargetKind::Bundle, &b"bundle bytes"[..]),
        ("kiosk-7.index", TargetKind::Index, &b"index bytes"[..]),
    ] {
        let info = &targets.signed.targets[name];
        let file = f
            .repo
            .join("targets")
            .join(format!("{}.{name}", common::sha256_hex(bytes)));
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        assert_eq!(
            mode(&file) & 0o044,
            0o044,
            "served files are world-readable"
        );
        info.check_bytes(name, bytes).unwrap();
        let custom: TargetCustom =
            serde_json::from_value(info.custom.as_ref().unwrap()[CUSTOM_KEY].clone()).unwrap();
        custom.validate().unwrap();
        assert_eq!(custom, release.target_custom(kind));
    }
    // Nothing but the two targets in targets/ (no temporary files left).
    assert_eq!(
        std::fs::read_dir(f.repo.join("targets")).unwrap().count(),
        2
    );
    f.open().verify(now()).unwrap();
}

#[test]
fn withdraw_removes_a_release_and_allow_rollback_is_signed_in_its_targets() {
    let f = Fixture::new();
    let one = f.release(1, b"bundle 1", b"index 1");
    let two = f.release(2, b"bundle 2", b"index 2");
    f.open().add(&f.keys, &one, now()).unwrap();
    f.open().add(&f.keys, &two, now()).unwrap();

    let w = f.open().withdraw(&f.keys, "kiosk", 2, now()).unwrap();
    assert!(w.changed);
    assert_eq!(w.withdrawn, ["kiosk-2.bundle", "kiosk-2.index"]);
    assert_eq!((w.versions.targets, w.versions.snapshot), (4, 4));
    let trusted = f.open().verify(now()).unwrap();
    let names: Vec<&String> = trusted.targets.signed.targets.keys().collect();
    assert_eq!(names, ["kiosk-1.bundle", "kiosk-1.index"]);
    // The files stay for downloads in progress.
    let file = format!("{}.kiosk-2.bundle", common::sha256_hex(b"bundle 2"));
    assert!(f.repo.join("targets").join(file).is_file());

    let before = listing(&f.repo);
    for (name, version) in [("kiosk", 2), ("kiosk", 9), ("other", 1)] {
        let err = f
            .open()
            .withdraw(&f.keys, name, version, now())
            .unwrap_err();
        assert!(matches!(err, Error::NoSuchRelease { .. }), "{err}");
    }
    assert_eq!(
        listing(&f.repo),
        before,
        "a refused withdraw changes nothing"
    );

    let three = f.release(3, b"bundle 3", b"index 3");
    let options = AddOptions {
        allow_rollback: true,
        ..AddOptions::default()
    };
    f.open().add_with(&f.keys, &three, options, now()).unwrap();
    let trusted = f.open().verify(now()).unwrap();
    for name in ["kiosk-3.bundle", "kiosk-3.index"] {
        let custom = &trusted.targets.signed.targets[name]
            .custom
            .as_ref()
            .unwrap()[CUSTOM_KEY];
        assert_eq!(custom["allow_rollback"], true, "{name}");
    }
    let custom = &trusted.targets.signed.targets["kiosk-1.index"]
        .custom
        .as_ref()
        .unwrap()[CUSTOM_KEY];
    assert!(custom.get("allow_rollback").is_none(), "absent unless set");
}

#[test]
fn adding_the_same_release_twice_changes_nothing() {
    let f = Fixture::new();
    let dir = f.release(1, b"b", b"i");
    f.open().add(&f.keys, &dir, now()).unwrap();
    let before = listing(&f.repo);
    let again = f.open().add(&f.keys, &dir, now()).unwrap();
    assert!(!again.changed);
    assert_eq!(again.versions.targets, 2);
    assert_eq!(listing(&f.repo), before);
}

#[test]
fn a_published_name_never_changes_content() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b", b"i"), now())
        .unwrap();
    let before = listing(&f.repo);
    let other = f.tmp.path().join("other");
    write_release(&other, 1, b"different bundle", b"i");
    let err = f.open().add(&f.keys, &other, now()).unwrap_err();
    assert!(
        matches!(err, Error::TargetConflict { ref name, .. } if name == "kiosk-1.bundle"),
        "{err}"
    );
    assert_eq!(listing(&f.repo), before);
}

#[test]
fn bundle_or_index_differing_from_release_json_is_refused() {
    let f = Fixture::new();
    let before = listing(&f.repo);
    // Same length, other content; longer; shorter.
    for replacement in [&b"XXXXXX"[..], b"bundle!", b"bund"] {
        let dir = f.release(3, b"bundle", b"index");
        std::fs::write(dir.join("kiosk-3.bundle"), replacement).unwrap();
        let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
        assert!(matches!(err, Error::ReleaseMismatch { .. }), "{err}");
        assert_eq!(listing(&f.repo), before, "nothing left behind");
    }
    let dir = f.release(4, b"bundle", b"index");
    std::fs::remove_file(dir.join("kiosk-4.index")).unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);
}

#[test]
fn invalid_release_descriptions_are_refused() {
    let f = Fixture::new();
    let dir = f.release(5, b"b", b"i");
    let text = std::fs::read_to_string(dir.join("release.json")).unwrap();
    std::fs::write(
        dir.join("release.json"),
        text.replace("kiosk-5.bundle", "../kiosk-5.bundle"),
    )
    .unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::Release { .. }), "{err}");
    std::fs::write(dir.join("release.json"), "{").unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::ReleaseJson { .. }), "{err}");
}

#[test]
fn missing_stray_and_misplaced_keys_are_refused() {
    let f = Fixture::new();
    let dir = f.release(1, b"b", b"i");
    let targets_dir = f.keys.role_dir(Role::Targets);
    let offline = f.tmp.path().join("offline");
    std::fs::rename(&targets_dir, &offline).unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughKeys {
                role: Role::Targets,
                threshold: 1,
                found: 0,
                ..
            }
        ),
        "{err}"
    );
    // The snapshot key put where the targets key belongs.
    std::fs::create_dir(&targets_dir).unwrap();
    let snapshot_file = &f.keys.read_role(Role::Snapshot).unwrap()[0].path;
    std::fs::copy(snapshot_file, targets_dir.join("s.json")).unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongRoleKey {
                dir_role: Role::Targets,
                key_role: Role::Snapshot,
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_file(targets_dir.join("s.json")).unwrap();
    SigningKey::generate()
        .save(&targets_dir.join("stranger.json"))
        .unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyNotInRoot {
                role: Role::Targets,
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_file(targets_dir.join("stranger.json")).unwrap();
    std::fs::write(targets_dir.join("garbage.json"), "{}").unwrap();
    let err = f.open().add(&f.keys, &dir, now()).unwrap_err();
    assert!(matches!(err, Error::KeyFile { .. }), "{err}");
    std::fs::remove_dir_all(&targets_dir).unwrap();
    std::fs::rename(&offline, &targets_dir).unwrap();
    f.open().add(&f.keys, &dir, now()).unwrap();
}

#[test]
fn threshold_two_needs_two_keys_at_hand() {
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Targets,
        RoleSettings {
            keys: 2,
            threshold: 2,
            expiry_days: 90,
        },
    );
    let f = Fixture::with_settings(&settings);
    let files = f.keys.read_role(Role::Targets).unwrap();
    std::fs::rename(&files[1].path, f.tmp.path().join("away.json")).unwrap();
    let err = f
        .open()
        .add(&f.keys, &f.release(1, b"b", b"i"), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughKeys {
                role: Role::Targets,
                threshold: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn expired_targets_and_root_are_refused_until_renewed() {
    let f = Fixture::new();
    let dir = f.release(1, b"b", b"i");
    // Day 90: targets (90 days) expired, root (365) not.
    let err = f.open().add(&f.keys, &dir, days(90)).unwrap_err();
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
    assert!(
        err.to_string().contains("repo resign --role targets"),
        "{err}"
    );
    let err = f.open().resign(&f.keys, &[], days(90)).unwrap_err();
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
    f.open()
        .resign(&f.keys, &[Role::Targets], days(90))
        .unwrap();
    f.open().add(&f.keys, &dir, days(90)).unwrap();

    // Day 400: root expired too.
    let err = f
        .open()
        .resign(&f.keys, &[Role::Targets], days(400))
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
    assert!(err.to_string().contains("repo resign --role root"), "{err}");
    let published = f
        .open()
        .resign(&f.keys, &[Role::Root, Role::Targets], days(400))
        .unwrap();
    assert_eq!(published.versions.root, 2);
    let trusted = f.open().verify(days(400)).unwrap();
    assert_eq!(trusted.root().signed.expires, days(765));
    assert_eq!(trusted.roots().len(), 2);
}

#[test]
fn resign_renews_snapshot_and_timestamp_with_online_keys_only() {
    let f = Fixture::new();
    // Offline keys are away.
    for role in [Role::Root, Role::Targets] {
        std::fs::rename(f.keys.role_dir(role), f.tmp.path().join(role.as_str())).unwrap();
    }
    let err = f.open().verify(days(2)).unwrap_err();
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
    let published = f.open().resign(&f.keys, &[], days(2)).unwrap();
    assert_eq!(
        (
            published.versions.root,
            published.versions.targets,
            published.versions.snapshot,
            published.versions.timestamp
        ),
        (1, 1, 2, 2)
    );
    let trusted = f.open().verify(days(2)).unwrap();
    assert_eq!(trusted.timestamp.signed.expires, days(3));
    assert_eq!(trusted.snapshot.signed.expires, days(9));
    let err = f
        .open()
        .resign(&f.keys, &[Role::Root], days(2))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughKeys {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rotating_each_role_keeps_the_repository_verifiable() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b", b"i"), now())
        .unwrap();
    let mut root_version = 1;
    for role in [Role::Timestamp, Role::Snapshot, Role::Targets, Role::Root] {
        let old = f.keys.read_role(role).unwrap();
        let published = f.open().rotate_key(&f.keys, role, now()).unwrap();
        root_version += 1;
        assert_eq!(published.versions.root, root_version);
        assert_eq!(published.new_keys.len(), 1);
        assert_eq!(published.retired.len(), 1);
        let new = f.keys.read_role(role).unwrap();
        assert_eq!(new.len(), 1);
        assert_ne!(new[0].key.key_id(), old[0].key.key_id());
        assert_eq!(mode(&new[0].path), 0o600);
        assert!(published.retired[0].starts_with(f.keys.path().join("retired").join(role.as_str())));
        let trusted = f.open().verify(now()).unwrap();
        let root = &trusted.root().signed;
        assert_eq!(
            root.role_keys(role).unwrap().keyids,
            vec![new[0].key.key_id().clone()]
        );
        assert!(
            !root.keys.contains_key(old[0].key.key_id()),
            "old {role} key dropped"
        );
        assert_eq!(
            meta(&f, "root.json"),
            meta(&f, &format!("{root_version}.root.json"))
        );
    }
    // The root rotation is signed by the old and the new root key.
    let last = root_of(&f, root_version);
    assert_eq!(last.signatures.len(), 2);
    // The targets survived every rotation.
    let trusted = f.open().verify(now()).unwrap();
    assert!(trusted
        .targets
        .signed
        .targets
        .contains_key("kiosk-1.bundle"));
    // And work goes on with the new keys.
    f.open()
        .add(&f.keys, &f.release(2, b"b2", b"i2"), now())
        .unwrap();
}

#[test]
fn a_root_signed_only_by_new_keys_breaks_the_chain() {
    let f = Fixture::new();
    f.open().rotate_key(&f.keys, Role::Root, now()).unwrap();
    // Re-sign root 2 with the new root key alone, as an attacker holding only it would.
    let root2 = root_of(&f, 2);
    let new_key = &f.keys.read_role(Role::Root).unwrap()[0].key;
    let forged = Metadata::sign(root2.signed.clone(), &[new_key]).unwrap();
    let bytes = forged.to_bytes().unwrap();
    std::fs::write(f.repo.join("metadata/2.root.json"), &bytes).unwrap();
    std::fs::write(f.repo.join("metadata/root.json"), &bytes).unwrap();
    let err = f.open().verify(now()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref source, .. } if matches!(source, flipside_tuf::Error::ThresholdNotMet { role: Role::Root, .. })),
        "{err}"
    );
}

#[test]
fn corruption_is_detected() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"bundle", b"index"), now())
        .unwrap();
    let pristine = listing(&f.repo);
    let restore = || {
        for (rel, bytes) in &pristine {
            std::fs::write(f.repo.join(rel), bytes).unwrap();
        }
    };
    // One flipped byte inside the signed content of each metadata file.
    for name in [
        "2.targets.json",
        "2.snapshot.json",
        "timestamp.json",
        "1.root.json",
    ] {
        let path = f.repo.join("metadata").join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = find(&bytes, b"\"expires\": \"2").unwrap() + 13;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = f.open().verify(now()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err}");
        restore();
    }
    f.open().verify(now()).unwrap();
    // A missing target file; a target file of another length.
    let file = f
        .repo
        .join("targets")
        .join(format!("{}.kiosk-1.bundle", common::sha256_hex(b"bundle")));
    std::fs::remove_file(&file).unwrap();
    let err = f.open().verify(now()).unwrap_err();
    assert!(matches!(err, Error::Inconsistent { .. }), "{err}");
    std::fs::write(&file, b"bundle plus").unwrap();
    let err = f.open().verify(now()).unwrap_err();
    assert!(matches!(err, Error::Inconsistent { .. }), "{err}");
    restore();
    // root.json out of step with the newest root.
    std::fs::write(f.repo.join("metadata/root.json"), b"{}").unwrap();
    let err = f
        .open()
        .add(&f.keys, &f.release(2, b"b", b"i"), now())
        .unwrap_err();
    assert!(matches!(err, Error::Inconsistent { .. }), "{err}");
    restore();
    // Not a repository at all.
    let err = Repository::open(&f.tmp.path().join("nothing")).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");
    std::fs::remove_file(f.repo.join("metadata/1.root.json")).unwrap();
    let err = f.open().verify(now()).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_second_publisher_is_locked_out() {
    let f = Fixture::new();
    let held = f.open();
    let err = Repository::open(&f.repo).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(held);
    f.open();
}

/// Fails the `fail_at`-th publishing step (0-based) of every later operation of `repo`.
fn fail_step(repo: &mut Repository, fail_at: usize) {
    let mut calls = 0;
    repo.set_fault_hook(Box::new(move |path| {
        calls += 1;
        if calls > fail_at {
            Err(std::io::Error::other(format!(
                "injected failure before {}",
                path.display()
            )))
        } else {
            Ok(())
        }
    }));
}

#[test]
fn a_failure_at_any_step_of_add_leaves_the_previous_repository() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b1", b"i1"), now())
        .unwrap();
    let dir = f.release(2, b"b2", b"i2");
    let before = listing(&f.repo);
    // Steps: 2 target files, targets, snapshot, timestamp, the publish record.
    for fail_at in 0..6 {
        let mut repo = f.open();
        fail_step(&mut repo, fail_at);
        let err = repo.add(&f.keys, &dir, now()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "step {fail_at}: {err}");
        drop(repo);
        assert_eq!(listing(&f.repo), before, "step {fail_at}");
        f.open().verify(now()).unwrap();
    }
    let mut repo = f.open();
    fail_step(&mut repo, 6);
    repo.add(&f.keys, &dir, now()).unwrap();
}

#[test]
fn a_failure_at_any_step_of_a_root_rotation_leaves_repository_and_keys() {
    let f = Fixture::new();
    let before = listing(&f.repo);
    let keys_before = listing(f.keys.path());
    // Steps: snapshot, N.root.json, root.json, timestamp, the publish record.
    for fail_at in 0..5 {
        let mut repo = f.open();
        fail_step(&mut repo, fail_at);
        let err = repo.rotate_key(&f.keys, Role::Root, now()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "step {fail_at}: {err}");
        drop(repo);
        assert_eq!(listing(&f.repo), before, "step {fail_at}");
        assert_eq!(listing(f.keys.path()), keys_before, "step {fail_at}");
        f.open().verify(now()).unwrap();
    }
}

#[test]
fn a_failure_during_init_leaves_nothing() {
    for fail_at in 0..7 {
        let f = Fixture::empty();
        let mut repo = Repository::create(&f.repo).unwrap();
        fail_step(&mut repo, fail_at);
        let err = repo
            .init(&f.keys, &InitSettings::default(), now())
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "step {fail_at}: {err}");
        drop(repo);
        assert!(
            listing(&f.repo).is_empty(),
            "step {fail_at}: {:?}",
            listing(&f.repo).keys()
        );
        assert!(listing(f.keys.path()).is_empty(), "step {fail_at}");
        // A later init succeeds.
        Repository::create(&f.repo)
            .unwrap()
            .init(&f.keys, &InitSettings::default(), now())
            .unwrap();
    }
}

#[test]
fn rotating_a_threshold_root_replaces_every_root_key() {
    let mut settings = InitSettings::default();
    settings.roles.insert(
        Role::Root,
        RoleSettings {
            keys: 3,
            threshold: 2,
            expiry_days: 365,
        },
    );
    let f = Fixture::with_settings(&settings);
    // One root key is lost: two of three still meet the threshold.
    let old = f.keys.read_role(Role::Root).unwrap();
    std::fs::remove_file(&old[0].path).unwrap();
    let published = f.open().rotate_key(&f.keys, Role::Root, now()).unwrap();
    assert_eq!(published.new_keys.len(), 3);
    assert_eq!(published.retired.len(), 2);
    let root2 = root_of(&f, 2);
    // Two old signatures and three new ones.
    assert_eq!(root2.signatures.len(), 5);
    let listed = &root2.signed.role_keys(Role::Root).unwrap();
    assert_eq!((listed.keyids.len(), listed.threshold), (3, 2));
    for file in &old {
        assert!(!root2.signed.keys.contains_key(file.key.key_id()));
    }
    f.open().verify(now()).unwrap();
    // With only one of the new root keys at hand, root can no longer be signed.
    let new = f.keys.read_role(Role::Root).unwrap();
    for file in &new[1..] {
        std::fs::remove_file(&file.path).unwrap();
    }
    let err = f.open().resign(&f.keys, &[Role::Root], now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughKeys {
                role: Role::Root,
                threshold: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// A publisher whose clock went back behind the last publish would sign metadata that devices
/// already consider expired: refused, naming the clock, with nothing published.
#[test]
fn a_clock_behind_the_last_publish_publishes_nothing() {
    let f = Fixture::new();
    f.open()
        .resign(&f.keys, &[Role::Targets], days(10))
        .unwrap();
    let before = listing(&f.repo);
    // Day 3: the clock went back a week; a timestamp renewed now would expire on day 4.
    let err = f.open().resign(&f.keys, &[], days(3)).unwrap_err();
    assert!(
        matches!(err, Error::ClockBehind { published_at, now }
            if published_at == days(10) && now == days(3)),
        "{err:?}"
    );
    assert!(err.to_string().contains("set the clock right"), "{err}");
    let err = f
        .open()
        .add(&f.keys, &f.release(1, b"b", b"i"), days(3))
        .unwrap_err();
    assert!(matches!(err, Error::ClockBehind { .. }), "{err:?}");
    assert_eq!(listing(&f.repo), before);
    // The clock set right again: publishing works.
    f.open().resign(&f.keys, &[], days(10)).unwrap();
}

/// Metadata that would expire within the safety margin is not published: a root due to expire
/// in half an hour makes every publish that does not renew it fail, naming root.
#[test]
fn a_role_expiring_within_the_margin_is_not_published() {
    let f = Fixture::new();
    let before = listing(&f.repo);
    // Root (365 days) expires 30 minutes after this clock; targets (90 days) is renewed.
    let almost = days(365) - chrono::TimeDelta::minutes(30);
    let err = f
        .open()
        .resign(&f.keys, &[Role::Targets], almost)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ExpiresTooSoon {
                role: Role::Root,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("repo resign --role root"), "{err}");
    assert_eq!(listing(&f.repo), before);
    // Renewing root with the rest publishes.
    f.open()
        .resign(&f.keys, &[Role::Root, Role::Targets], almost)
        .unwrap();
}

/// The custom fields of every target of release `version` of kiosk.
fn customs(f: &Fixture, version: u64) -> Vec<TargetCustom> {
    let trusted = f.open().verify(now()).unwrap();
    trusted
        .targets
        .signed
        .targets
        .values()
        .filter_map(|t| t.custom.as_ref()?.get(CUSTOM_KEY).cloned())
        .map(|v| serde_json::from_value::<TargetCustom>(v).unwrap())
        .filter(|c| c.version == version)
        .collect()
}

fn waves() -> Rollout {
    Rollout {
        waves: vec![
            Wave {
                start: now(),
                share: 100,
            },
            Wave {
                start: days(2),
                share: 10_000,
            },
        ],
        paused_at: None,
    }
}

/// Channels and a rollout given at `add` are signed into every target of the release; `amend`
/// pauses, resumes, replaces and drops the schedule and sets the channels, each a new signed
/// targets version; a change to nothing publishes nothing.
#[test]
fn channels_and_rollouts_are_signed_and_amended() {
    let f = Fixture::new();
    let options = AddOptions {
        channels: vec!["beta".into()],
        rollout: Some(waves()),
        ..AddOptions::default()
    };
    f.open()
        .add_with(&f.keys, &f.release(1, b"b", b"i"), options.clone(), now())
        .unwrap();
    let all = customs(&f, 1);
    assert_eq!(all.len(), 2);
    for c in &all {
        assert_eq!(c.channels, ["beta"]);
        assert_eq!(c.rollout, Some(waves()));
    }
    // Adding it again, whatever the options, changes nothing: amend does.
    let again = f
        .open()
        .add(&f.keys, &f.release(1, b"b", b"i"), now())
        .unwrap();
    assert!(!again.changed);

    let at = days(1);
    let paused = f
        .open()
        .amend(&f.keys, "kiosk", 1, &Amend::Pause, at)
        .unwrap();
    assert!(paused.changed);
    for c in customs(&f, 1) {
        assert_eq!(c.rollout.unwrap().paused_at, Some(at));
    }
    // Pausing again keeps the first instant and publishes nothing.
    let before = listing(&f.repo);
    let twice = f
        .open()
        .amend(&f.keys, "kiosk", 1, &Amend::Pause, days(2))
        .unwrap();
    assert!(!twice.changed);
    assert_eq!(listing(&f.repo), before);

    f.open()
        .amend(&f.keys, "kiosk", 1, &Amend::Resume, days(2))
        .unwrap();
    for c in customs(&f, 1) {
        assert_eq!(c.rollout, Some(waves()));
    }
    let promote = Amend::Channels(vec!["beta".into(), "stable".into()]);
    f.open()
        .amend(&f.keys, "kiosk", 1, &promote, days(2))
        .unwrap();
    f.open()
        .amend(&f.keys, "kiosk", 1, &Amend::Rollout(None), days(2))
        .unwrap();
    for c in customs(&f, 1) {
        assert_eq!(c.channels, ["beta", "stable"]);
        assert_eq!(c.rollout, None);
    }
}

#[test]
fn amends_that_cannot_apply_are_refused_and_publish_nothing() {
    let f = Fixture::new();
    f.open()
        .add(&f.keys, &f.release(1, b"b", b"i"), now())
        .unwrap();
    let before = listing(&f.repo);
    let err = f
        .open()
        .amend(&f.keys, "kiosk", 1, &Amend::Pause, now())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rollout { why } if why.contains("no rollout to pause")),
        "{err}"
    );
    let err = f
        .open()
        .amend(&f.keys, "kiosk", 2, &Amend::Resume, now())
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchRelease { .. }), "{err}");
    let bad = Amend::Channels(vec!["../beta".into()]);
    let err = f
        .open()
        .amend(&f.keys, "kiosk", 1, &bad, now())
        .unwrap_err();
    assert!(matches!(err, Error::Rollout { .. }), "{err}");
    let backwards = Rollout {
        waves: vec![waves().waves[1], waves().waves[0]],
        paused_at: None,
    };
    let err = f
        .open()
        .amend(
            &f.keys,
            "kiosk",
            1,
            &Amend::Rollout(Some(backwards.clone())),
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Rollout { .. }), "{err}");
    let options = AddOptions {
        rollout: Some(backwards),
        ..AddOptions::default()
    };
    let err = f
        .open()
        .add_with(&f.keys, &f.release(2, b"b2", b"i2"), options, now())
        .unwrap_err();
    assert!(matches!(err, Error::Rollout { .. }), "{err}");
    assert_eq!(listing(&f.repo), before);
}

/// Pruning removes the files of a withdrawn release and older targets and snapshot versions,
/// only once they are older than the grace period; every root and the current state stay, and
/// the repository still verifies. A dry run lists the same files and removes nothing.
#[test]
fn prune_removes_what_no_device_needs_after_the_grace_period() {
    let f = Fixture::new();
    for v in 1..=3u64 {
        let dir = f.release(v, format!("b{v}").as_bytes(), format!("i{v}").as_bytes());
        f.open().add(&f.keys, &dir, now()).unwrap();
    }
    f.open().withdraw(&f.keys, "kiosk", 2, now()).unwrap();
    let before = listing(&f.repo);
    let trusted = f.open().verify(now()).unwrap();
    let (targets, snapshot) = (
        trusted.targets.signed.version,
        trusted.snapshot.signed.version,
    );

    // Just written: within the default grace, nothing goes.
    let kept = f
        .open()
        .prune(
            chrono::Utc::now(),
            flipside_repository::DEFAULT_GRACE,
            false,
        )
        .unwrap();
    assert!(kept.files.is_empty(), "{kept:?}");

    let dry = f
        .open()
        .prune(chrono::Utc::now(), chrono::TimeDelta::zero(), true)
        .unwrap();
    assert_eq!(listing(&f.repo), before, "a dry run removes nothing");
    let pruned = f
        .open()
        .prune(chrono::Utc::now(), chrono::TimeDelta::zero(), false)
        .unwrap();
    assert_eq!(pruned, dry);
    let names: Vec<String> = pruned
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = vec![
        format!("{}.kiosk-2.bundle", common::sha256_hex(b"b2")),
        format!("{}.kiosk-2.index", common::sha256_hex(b"i2")),
    ];
    expected.extend((1..targets).map(|v| format!("{v}.targets.json")));
    expected.extend((1..snapshot).map(|v| format!("{v}.snapshot.json")));
    let (mut got, mut want) = (names.clone(), expected);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        pruned.bytes,
        pruned
            .files
            .iter()
            .map(|p| before[p.strip_prefix(&f.repo).unwrap()].len() as u64)
            .sum::<u64>()
    );
    // Roots, the current state and the releases still listed stay; the repository verifies.
    let after = listing(&f.repo);
    assert!(after.keys().any(|p| p.ends_with("metadata/1.root.json")));
    for v in [1, 3] {
        let bundle = format!(
            "{}.kiosk-{v}.bundle",
            common::sha256_hex(format!("b{v}").as_bytes())
        );
        assert!(after.keys().any(|p| p.ends_with(&bundle)), "{bundle}");
    }
    f.open().verify(now()).unwrap();
}
