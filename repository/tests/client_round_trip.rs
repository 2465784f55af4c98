//! Round trip from publisher to device: flipside-tuf's client workflow (`TrustedSet`) reads
//! what this crate publishes, through key rotations, from an old trusted root and cache.

mod common;

use std::path::Path;

use common::{now, sha256_hex, Fixture};
use flipside_tuf::{Origin, Role, TrustedSet};

/// What a device keeps between updates.
struct Cache {
    root: Vec<u8>,
    timestamp: Option<Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

/// One update run against `repo`, as the specification's client workflow does it.
fn refresh(repo: &Path, cache: &mut Cache) -> TrustedSet {
    let read = |name: &str| std::fs::read(repo.join("metadata").join(name)).ok();
    let mut set = TrustedSet::new(&cache.root, now()).unwrap();
    loop {
        let next = set.root().signed.version + 1;
        match read(&format!("{next}.root.json")) {
            Some(bytes) => set.update_root(&bytes).unwrap(),
            None => break,
        }
    }
    cache.root = set.root().to_bytes().unwrap();
    // A cached file that no longer verifies (rotated keys) is dropped: fast-forward recovery.
    if let Some(bytes) = &cache.timestamp {
        if set.update_timestamp(bytes, Origin::Cached).is_err() {
            cache.timestamp = None;
        }
    }
    let timestamp = read("timestamp.json").unwrap();
    set.update_timestamp(&timestamp, Origin::Remote).unwrap();
    cache.timestamp = Some(timestamp);
    if let Some(bytes) = &cache.snapshot {
        if set.update_snapshot(bytes, Origin::Cached).is_err() {
            cache.snapshot = None;
        }
    }
    let version = set
        .timestamp()
        .unwrap()
        .signed
        .snapshot_meta()
        .unwrap()
        .version;
    let snapshot = read(&format!("{version}.snapshot.json")).unwrap();
    set.update_snapshot(&snapshot, Origin::Remote).unwrap();
    cache.snapshot = Some(snapshot);
    let version = set
        .snapshot()
        .unwrap()
        .signed
        .targets_meta()
        .unwrap()
        .version;
    set.update_targets(&read(&format!("{version}.targets.json")).unwrap())
        .unwrap();
    set
}

fn check_target(repo: &Path, set: &TrustedSet, name: &str, bytes: &[u8]) {
    let info = &set.targets().unwrap().signed.targets[name];
    let sha = hex::encode(info.sha256(name).unwrap());
    assert_eq!(sha, sha256_hex(bytes));
    let served = std::fs::read(repo.join("targets").join(format!("{sha}.{name}"))).unwrap();
    info.check_bytes(name, &served).unwrap();
    assert_eq!(served, bytes);
}

#[test]
fn the_device_workflow_reads_what_the_publisher_wrote() {
    let f = Fixture::new();
    let mut cache = Cache {
        root: std::fs::read(f.repo.join("metadata/1.root.json")).unwrap(),
        timestamp: None,
        snapshot: None,
    };
    f.open()
        .add(&f.keys, &f.release(1, b"bundle 1", b"index 1"), now())
        .unwrap();
    let set = refresh(&f.repo, &mut cache);
    check_target(&f.repo, &set, "kiosk-1.bundle", b"bundle 1");
    check_target(&f.repo, &set, "kiosk-1.index", b"index 1");

    for role in [Role::Timestamp, Role::Snapshot, Role::Root, Role::Targets] {
        f.open().rotate_key(&f.keys, role, now()).unwrap();
    }
    f.open()
        .add(&f.keys, &f.release(2, b"bundle 2", b"index 2"), now())
        .unwrap();
    f.open().resign(&f.keys, &[Role::Root], now()).unwrap();
    let set = refresh(&f.repo, &mut cache);
    assert_eq!(set.root().signed.version, 6);
    check_target(&f.repo, &set, "kiosk-2.bundle", b"bundle 2");
    check_target(&f.repo, &set, "kiosk-1.bundle", b"bundle 1");
    let custom = set.targets().unwrap().signed.targets["kiosk-2.bundle"]
        .custom
        .clone()
        .unwrap();
    let custom: flipside_contract::release::TargetCustom =
        serde_json::from_value(custom[flipside_contract::release::CUSTOM_KEY].clone()).unwrap();
    assert_eq!(custom.version, 2);
    assert_eq!(custom.index_target, "kiosk-2.index");
}
