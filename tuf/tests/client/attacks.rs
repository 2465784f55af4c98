//! One test per attack: the mirror serves what the attacker made, the refresh (or download)
//! is refused with the variant that names the attack, and the store is unchanged.

use flipside_repository::{InitSettings, RoleSettings};
use flipside_tuf::client::{Error, FsTransport, Limits, MetadataStore};
use flipside_tuf::{Error as Tuf, MetaFile, Role, SigningKey, TargetFile};
use serde_json::Value;
use sha2::{Digest, Sha512};

use crate::helpers::*;

/// A publisher with release 1 and a device that trusts its first root.
fn published() -> (Publisher, Device) {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    (p, device)
}

/// Release 1 kept as an old mirror, release 2 published, the device up to date with it.
fn two_versions() -> (Publisher, Mirror, Device) {
    let (p, device) = published();
    let old = p.mirror();
    p.add_release(2, at(1));
    device.refresh(&p.repo, at(2)).unwrap();
    (p, old, device)
}

fn snapshot_path(mirror: &Mirror) -> String {
    let version = mirror.timestamp().snapshot_meta().unwrap().version;
    format!("metadata/{version}.snapshot.json")
}

fn targets_path(mirror: &Mirror) -> String {
    let version = mirror.snapshot().targets_meta().unwrap().version;
    format!("metadata/{version}.targets.json")
}

/// The verification failure of a refused target download.
fn target_refusal(err: &Error) -> &Tuf {
    match err {
        Error::Target { .. } => err.tuf_error().unwrap(),
        other => panic!("expected a refused target, got {other:?}"),
    }
}

// --- arbitrary software and key compromise ---------------------------------------------

#[test]
fn new_root_signed_only_by_new_keys_is_refused() {
    let (p, device) = published();
    device.refresh(&p.repo, at(1)).unwrap();
    let mirror = p.mirror();
    let attacker = unknown_key();
    let mut root = parse_root(&p.root(1));
    root.version = 2;
    for id in root.role_keys(Role::Root).unwrap().keyids.clone() {
        root.keys.remove(&id);
    }
    root.keys
        .insert(attacker.key_id().clone(), attacker.public().clone());
    root.roles.get_mut("root").unwrap().keyids = vec![attacker.key_id().clone()];
    mirror.write("metadata/2.root.json", &sign(root, &[&attacker]));

    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Root),
            Tuf::ThresholdNotMet {
                role: Role::Root,
                valid: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn new_root_not_signed_by_its_own_new_keys_is_refused() {
    let (p, device) = published();
    let mirror = p.mirror();
    let new_key = unknown_key();
    let mut root = parse_root(&p.root(1));
    root.version = 2;
    root.keys
        .insert(new_key.key_id().clone(), new_key.public().clone());
    root.roles.get_mut("root").unwrap().keyids = vec![new_key.key_id().clone()];
    // Signed by the old root key only: root 1 would accept it, root 2 itself does not.
    mirror.write("metadata/2.root.json", &sign(root, &[&p.key(Role::Root)]));

    let err = device.refused(&mirror.dir, at(1));
    assert!(
        matches!(refusal(&err, Role::Root), Tuf::ThresholdNotMet { .. }),
        "{err}"
    );
}

#[test]
fn unknown_key_is_refused() {
    let (p, device) = published();
    device.refresh(&p.repo, at(1)).unwrap();
    let attacker = unknown_key();

    // A timestamp signed by a key root does not list.
    let mirror = p.mirror();
    let mut timestamp = mirror.timestamp();
    timestamp.version += 1;
    mirror.put_timestamp(timestamp.clone(), &[&attacker]);
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::ThresholdNotMet { valid: 0, .. }
        ),
        "{err}"
    );

    // The same signature presented under the real timestamp key's id.
    let mut envelope: Value =
        serde_json::from_slice(&mirror.read("metadata/timestamp.json")).unwrap();
    envelope["signatures"][0]["keyid"] = p.key(Role::Timestamp).key_id().as_str().into();
    mirror.write(
        "metadata/timestamp.json",
        &serde_json::to_vec_pretty(&envelope).unwrap(),
    );
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::ThresholdNotMet { valid: 0, .. }
        ),
        "{err}"
    );

    // A snapshot signed by an unknown key, named by a valid timestamp.
    let mirror = p.mirror();
    let mut snapshot = mirror.snapshot();
    snapshot.version += 1;
    let entry = mirror.put_snapshot(snapshot, &[&attacker]);
    mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Snapshot),
            Tuf::ThresholdNotMet { valid: 0, .. }
        ),
        "{err}"
    );
}

#[test]
fn revoked_key_is_refused() {
    let (p, device) = published();
    let rotated = p.rotate(Role::Timestamp, at(1));
    let revoked = SigningKey::load(&rotated.retired[0]).unwrap();
    device.refresh(&p.repo, at(2)).unwrap();

    let mirror = p.mirror();
    let mut timestamp = mirror.timestamp();
    timestamp.version += 1;
    mirror.put_timestamp(timestamp, &[&revoked]);
    let err = device.refused(&mirror.dir, at(3));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::ThresholdNotMet { valid: 0, .. }
        ),
        "{err}"
    );
}

#[test]
fn signature_duplicated_by_key_id_or_under_another_id_is_refused() {
    let mut settings = InitSettings::default();
    for (role, days) in [(Role::Root, 365), (Role::Timestamp, 1)] {
        let two = RoleSettings {
            keys: 2,
            threshold: 2,
            expiry_days: days,
        };
        settings.roles.insert(role, two);
    }
    let p = Publisher::with_settings(&settings);
    p.add_release(1, t0());
    p.rotate(Role::Snapshot, at(1));
    // The honest repository passes with both signatures.
    Device::new(&p.root(1)).refresh(&p.repo, at(2)).unwrap();

    // Root 2 is checked by a device at root 1, the timestamp by one already at root 2.
    let (at_root_1, at_root_2) = (Device::new(&p.root(1)), Device::new(&p.root(2)));
    let duplicate = |path: &str, same_keyid: bool| {
        let mirror = p.mirror();
        let mut envelope: Value = serde_json::from_slice(&mirror.read(path)).unwrap();
        let signatures = envelope["signatures"].as_array_mut().unwrap();
        assert_eq!(signatures.len(), 2);
        let first = signatures[0].clone();
        if same_keyid {
            signatures[1] = first;
        } else {
            // The first key's signature under the second key's id.
            signatures[1]["sig"] = first["sig"].clone();
        }
        mirror.write(path, &serde_json::to_vec_pretty(&envelope).unwrap());
        mirror
    };
    // The same key id twice is refused as a whole.
    let mirror = duplicate("metadata/timestamp.json", true);
    let err = at_root_2.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::DuplicateSignature {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    let mirror = duplicate("metadata/2.root.json", true);
    let err = at_root_1.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Root),
            Tuf::DuplicateSignature {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );
    // One key's signature under two key ids counts once.
    let mirror = duplicate("metadata/timestamp.json", false);
    let err = at_root_2.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::ThresholdNotMet {
                threshold: 2,
                valid: 1,
                ..
            }
        ),
        "{err}"
    );
    let mirror = duplicate("metadata/2.root.json", false);
    let err = at_root_1.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Root),
            Tuf::ThresholdNotMet {
                threshold: 2,
                valid: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn one_byte_flipped_in_any_metadata_file_is_refused() {
    let p = Publisher::new();
    p.add_release(1, t0());
    p.rotate(Role::Timestamp, at(1));
    let mirror = p.mirror();
    // Each file must be fetched by the device that checks it: root 2 by a device at root 1,
    // the others by a device already at root 2 (a root accepted before a refusal is kept).
    let at_root_1 = Device::new(&p.root(1));
    let at_root_2 = Device::new(&p.root(2));
    let files = [
        ("metadata/2.root.json".to_string(), Role::Root, &at_root_1),
        (
            "metadata/timestamp.json".to_string(),
            Role::Timestamp,
            &at_root_2,
        ),
        (snapshot_path(&mirror), Role::Snapshot, &at_root_2),
        (targets_path(&mirror), Role::Targets, &at_root_2),
    ];
    let mut flips = 0;
    for (path, role, device) in files {
        let original = mirror.read(&path);
        for i in 0..original.len() {
            let mut flipped = original.clone();
            flipped[i] ^= 0x01;
            mirror.write(&path, &flipped);
            let err = device.refused(&mirror.dir, at(2));
            match &err {
                Error::Metadata { role: r, .. } if *r == role => {}
                other => panic!("{path} byte {i}: expected a {role} refusal, got {other}"),
            }
            flips += 1;
        }
        mirror.write(&path, &original);
    }
    assert!(flips > 2000, "{flips} flips");
    // The unmodified mirror is accepted: the flips, not the setup, were refused.
    at_root_1.refresh(&mirror.dir, at(2)).unwrap();
}

#[test]
fn target_with_a_flipped_or_missing_byte_is_refused() {
    let (p, device) = published();
    let mut client = device.client(&p.repo);
    client.refresh(at(1)).unwrap();
    let path = client.target_path("kiosk-1.bundle").unwrap();
    let before = listing(&device.store);

    let mirror = p.mirror();
    let mut client = device.client(&mirror.dir);
    client.refresh(at(1)).unwrap();
    let bundle = mirror.read(&path);
    let mut flipped = bundle.clone();
    flipped[1000] ^= 0x01;
    mirror.write(&path, &flipped);
    let err = client
        .download_target("kiosk-1.bundle", &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(target_refusal(&err), Tuf::HashMismatch { .. }),
        "{err}"
    );
    mirror.write(&path, &bundle[..bundle.len() - 1]);
    let err = client
        .download_target("kiosk-1.bundle", &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(target_refusal(&err), Tuf::LengthMismatch { .. }),
        "{err}"
    );
    std::fs::remove_file(mirror.dir.join(&path)).unwrap();
    let err = client
        .download_target("kiosk-1.bundle", &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert_eq!(listing(&device.store), before);
}

#[test]
fn target_without_a_supported_hash_is_refused_before_any_fetch() {
    let (p, device) = published();
    let mirror = p.mirror();
    mirror.republish_targets(&p, |targets| {
        let file = targets.targets.get_mut("kiosk-1.bundle").unwrap();
        file.hashes.clear();
        file.hashes.insert("blake2b".to_string(), "00".repeat(64));
    });
    let transport = Recording::new(&mirror.dir);
    let log = transport.log.clone();
    let mut client = device.client_with(transport, Limits::default());
    client.refresh(at(1)).unwrap();
    log.borrow_mut().clear();
    let mut out = Vec::new();
    let err = client
        .download_target("kiosk-1.bundle", &mut out)
        .unwrap_err();
    assert!(
        matches!(target_refusal(&err), Tuf::MissingHash { .. }),
        "{err}"
    );
    assert!(
        log.borrow().is_empty(),
        "nothing was fetched: {:?}",
        log.borrow()
    );
    assert!(out.is_empty());
}

#[test]
fn target_with_sha512_only_or_both_hashes_is_downloaded_and_checked() {
    let (bundle, _) = release_bytes(1);
    let sha512 = hex::encode(Sha512::digest(&bundle));
    let sha256 = sha256_hex(&bundle);
    for both in [false, true] {
        let (p, device) = published();
        let mirror = p.mirror();
        mirror.republish_targets(&p, |targets| {
            let file = targets.targets.get_mut("kiosk-1.bundle").unwrap();
            file.hashes.clear();
            file.hashes.insert("sha512".to_string(), sha512.clone());
            if both {
                file.hashes.insert("sha256".to_string(), sha256.clone());
            }
        });
        // With consistent snapshots the file is named by the sha256, else the sha512.
        let prefix = if both { &sha256 } else { &sha512 };
        mirror.write(&format!("targets/{prefix}.kiosk-1.bundle"), &bundle);
        let mut client = device.client(&mirror.dir);
        client.refresh(at(1)).unwrap();
        let mut out = Vec::new();
        client.download_target("kiosk-1.bundle", &mut out).unwrap();
        assert_eq!(out, bundle, "both: {both}");

        // An altered file is refused.
        let path = format!("targets/{prefix}.kiosk-1.bundle");
        let mut altered = bundle.clone();
        altered[0] ^= 1;
        mirror.write(&path, &altered);
        let err = client
            .download_target("kiosk-1.bundle", &mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(target_refusal(&err), Tuf::HashMismatch { .. }),
            "{err}"
        );
    }
}

#[test]
fn target_name_with_path_traversal_is_refused() {
    // Plain, and percent-encoded as URL resolution would read it (`%2e%2e` is `..`).
    for evil in [
        "../../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "a/%2E%2e/%2e./b",
    ] {
        let (p, device) = published();
        let mirror = p.mirror();
        mirror.republish_targets(&p, |targets| {
            let file = TargetFile::new(4, &sha256_hex(b"root"), None);
            targets.targets.insert(evil.to_string(), file);
        });
        let transport = Recording::new(&mirror.dir);
        let log = transport.log.clone();
        let mut client = device.client_with(transport, Limits::default());
        client.refresh(at(1)).unwrap();
        log.borrow_mut().clear();
        let err = client.download_target(evil, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, Error::UnsafeTargetName { .. }),
            "{evil}: {err}"
        );
        assert!(log.borrow().is_empty(), "{evil}");
    }
}

// --- rollback --------------------------------------------------------------------------

#[test]
fn rollback_timestamp_served_after_a_newer_one_is_refused() {
    let (p, old, device) = two_versions();
    let mirror = p.mirror();
    mirror.write(
        "metadata/timestamp.json",
        &old.read("metadata/timestamp.json"),
    );
    let err = device.refused(&mirror.dir, at(3));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::Rollback {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_snapshot_served_after_a_newer_one_is_refused() {
    // A new timestamp (stolen online key) naming the older snapshot.
    let (p, old, device) = two_versions();
    let mirror = p.mirror();
    let older: MetaFile = old.timestamp().snapshot_meta().unwrap().clone();
    mirror.put_timestamp_naming(older, &p.key(Role::Timestamp));
    let err = device.refused(&mirror.dir, at(3));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::Rollback {
                role: Role::Snapshot,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_targets_served_after_newer_ones_is_refused() {
    // A new snapshot and timestamp (stolen online keys) naming the older targets.
    let (p, old, device) = two_versions();
    let mirror = p.mirror();
    let mut snapshot = mirror.snapshot();
    snapshot.version += 1;
    let older = old.snapshot().targets_meta().unwrap().clone();
    snapshot.meta.insert("targets.json".to_string(), older);
    let entry = mirror.put_snapshot(snapshot, &[&p.key(Role::Snapshot)]);
    mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));
    let err = device.refused(&mirror.dir, at(3));
    assert!(
        matches!(
            refusal(&err, Role::Snapshot),
            Tuf::Rollback {
                role: Role::Targets,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_root_served_as_the_next_version_is_refused() {
    let (p, device) = published();
    let mirror = p.mirror();
    mirror.write("metadata/2.root.json", &p.root(1));
    let err = device.refused(&mirror.dir, at(1));
    assert!(
        matches!(
            refusal(&err, Role::Root),
            Tuf::VersionMismatch {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_timestamp_without_a_version_is_refused() {
    let (p, device) = published();
    device.refresh(&p.repo, at(1)).unwrap();
    let mirror = p.mirror();
    let mut envelope: Value =
        serde_json::from_slice(&mirror.read("metadata/timestamp.json")).unwrap();
    envelope["signed"]
        .as_object_mut()
        .unwrap()
        .remove("version");
    mirror.write(
        "metadata/timestamp.json",
        &serde_json::to_vec_pretty(&envelope).unwrap(),
    );
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(refusal(&err, Role::Timestamp), Tuf::Parse { .. }),
        "{err}"
    );
}

// --- indefinite freeze -----------------------------------------------------------------

#[test]
fn expired_timestamp_is_refused() {
    // The timestamp expires a day after it was signed; two days later nobody re-signed it.
    let (p, device) = published();
    let fresh = Device::new(&p.root(1));
    let err = fresh.refused(&p.repo, at(48));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::Expired {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    // A device that trusted it while it was valid is refused too (same version, cached).
    device.refresh(&p.repo, at(1)).unwrap();
    let err = device.refused(&p.repo, at(48));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::Expired {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn expired_root_is_refused() {
    let (p, device) = published();
    let err = device.refused(&p.repo, t0() + chrono::TimeDelta::days(366));
    assert!(
        matches!(
            refusal(&err, Role::Root),
            Tuf::Expired {
                role: Role::Root,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn clock_set_back_before_last_trusted_time_still_refuses_expired_metadata() {
    // The repository as signed at t0: its timestamp is valid until hour 24.
    let (p, device) = published();
    // With its clock at hour 12 a device with no trusted time accepts it...
    Device::new(&p.root(1)).refresh(&p.repo, at(12)).unwrap();
    // ...but a device that last trusted hour 48 (a successful refresh then, or the build time
    // of its image) and whose clock was reset to hour 12 checks expiry at hour 48.
    let store = MetadataStore::open(&device.store).unwrap();
    store.raise_trusted_time(at(48)).unwrap();
    let err = device.refused(&p.repo, at(12));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            Tuf::Expired { role: Role::Timestamp, now, .. } if *now == at(48)
        ),
        "{err}"
    );

    // The time recorded by a successful refresh is the floor of the next one.
    let device = Device::new(&p.root(1));
    let refreshed = device.refresh(&p.repo, at(20)).unwrap();
    assert_eq!(refreshed.reference_time, at(20));
    let refreshed = device.refresh(&p.repo, at(5)).unwrap();
    assert_eq!(refreshed.reference_time, at(20), "the clock went back");
    let store = MetadataStore::open(&device.store).unwrap();
    assert_eq!(store.last_trusted_time().unwrap(), Some(at(20)));
}

// --- mix-and-match ---------------------------------------------------------------------

#[test]
fn mix_and_match_snapshot_from_another_repository_version_is_refused() {
    let (p, device) = published();
    let old = p.mirror();
    p.add_release(2, at(1));
    let mirror = p.mirror();
    mirror.write(&snapshot_path(&mirror), &old.read(&snapshot_path(&old)));
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Snapshot),
            Tuf::LengthMismatch { .. } | Tuf::HashMismatch { .. }
        ),
        "{err}"
    );

    // A timestamp that names the snapshot by version only: the version check catches it.
    let mut timestamp = mirror.timestamp();
    let version = timestamp.snapshot_meta().unwrap().version;
    timestamp.version += 1;
    let version_only = MetaFile {
        version,
        length: None,
        hashes: None,
        extra: Default::default(),
    };
    timestamp
        .meta
        .insert("snapshot.json".to_string(), version_only);
    mirror.put_timestamp(timestamp, &[&p.key(Role::Timestamp)]);
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Snapshot),
            Tuf::VersionMismatch {
                role: Role::Snapshot,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn mix_and_match_targets_from_another_repository_version_is_refused() {
    let (p, device) = published();
    let old = p.mirror();
    p.add_release(2, at(1));
    let mirror = p.mirror();
    mirror.write(&targets_path(&mirror), &old.read(&targets_path(&old)));
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(
            refusal(&err, Role::Targets),
            Tuf::LengthMismatch { .. } | Tuf::HashMismatch { .. }
        ),
        "{err}"
    );
}

// --- endless data ----------------------------------------------------------------------

/// `bytes` followed by spaces up to `len` (still valid JSON).
fn padded(bytes: &[u8], len: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(len as usize, b' ');
    out
}

#[test]
fn endless_timestamp_beyond_the_cap_is_refused() {
    let (p, device) = published();
    let cap = Limits::default().max_timestamp_size;
    let mirror = p.mirror();
    let timestamp = mirror.read("metadata/timestamp.json");
    mirror.write("metadata/timestamp.json", &padded(&timestamp, cap + 1));
    let err = device.refused(&mirror.dir, at(1));
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == cap),
        "{err}"
    );

    let endless = Endless {
        inner: FsTransport::new(&p.repo),
        path: "metadata/timestamp.json".to_string(),
    };
    let err = device.refused_with(endless, Limits::default(), at(1));
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");

    // Exactly at the cap is allowed.
    mirror.write("metadata/timestamp.json", &padded(&timestamp, cap));
    device.refresh(&mirror.dir, at(1)).unwrap();
}

#[test]
fn endless_root_beyond_the_cap_is_refused() {
    let (p, device) = published();
    p.rotate(Role::Root, at(1));
    let cap = Limits::default().max_root_size;
    let mirror = p.mirror();
    mirror.write("metadata/2.root.json", &padded(&p.root(2), cap + 1));
    let err = device.refused(&mirror.dir, at(2));
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == cap),
        "{err}"
    );

    let endless = Endless {
        inner: FsTransport::new(&p.repo),
        path: "metadata/2.root.json".to_string(),
    };
    let err = device.refused_with(endless, Limits::default(), at(2));
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn endless_snapshot_longer_than_its_signed_length_is_refused() {
    let (p, device) = published();
    let mirror = p.mirror();
    let path = snapshot_path(&mirror);
    let signed = mirror.timestamp().snapshot_meta().unwrap().length.unwrap();
    let mut longer = mirror.read(&path);
    longer.push(b'\n');
    mirror.write(&path, &longer);
    let err = device.refused(&mirror.dir, at(1));
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == signed),
        "{err}"
    );

    let endless = Endless {
        inner: FsTransport::new(&p.repo),
        path,
    };
    let err = device.refused_with(endless, Limits::default(), at(1));
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn endless_target_longer_than_signed_is_refused() {
    let (p, device) = published();
    let mut client = device.client(&p.repo);
    client.refresh(at(1)).unwrap();
    let path = client.target_path("kiosk-1.bundle").unwrap();
    let signed = client.target("kiosk-1.bundle").unwrap().unwrap().length;
    let before = listing(&device.store);

    let mirror = p.mirror();
    let mut longer = mirror.read(&path);
    longer.extend_from_slice(b"and more");
    mirror.write(&path, &longer);
    let mut client = device.client(&mirror.dir);
    client.refresh(at(1)).unwrap();
    let mut out = Vec::new();
    let err = client
        .download_target("kiosk-1.bundle", &mut out)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == signed),
        "{err}"
    );
    assert!(
        out.len() as u64 <= signed,
        "never more than the signed length is written"
    );

    let endless = Endless {
        inner: FsTransport::new(&p.repo),
        path: path.clone(),
    };
    let mut client = device.client_with(endless, Limits::default());
    client.refresh(at(1)).unwrap();
    let mut out = Vec::new();
    let err = client
        .download_target("kiosk-1.bundle", &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(out.len() as u64 <= signed);
    // In memory, the limit applies before anything is fetched.
    let small = Limits {
        max_target_in_memory: signed - 1,
        ..Limits::default()
    };
    let mut client = device.client_with(FsTransport::new(&p.repo), small);
    client.refresh(at(1)).unwrap();
    let err = client.fetch_target_bytes("kiosk-1.bundle").unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(listing(&device.store), before);
}

// --- malicious mirror ------------------------------------------------------------------

#[test]
fn mirror_without_a_timestamp_is_an_error() {
    let (p, device) = published();
    let mirror = p.mirror();
    std::fs::remove_file(mirror.dir.join("metadata/timestamp.json")).unwrap();
    let err = device.refused(&mirror.dir, at(1));
    assert!(matches!(err, Error::Missing { .. }), "{err}");
}
