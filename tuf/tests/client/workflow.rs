//! The workflow on honest repositories: first refresh and download, an unchanged repository,
//! root rotation chains, recovery from fast-forward attacks by key rotation, persistence.

use flipside_repository::Versions as Published;
use flipside_tuf::client::{Error, Limits, MetadataStore, Versions};
use flipside_tuf::{MetaFile, Role};

use crate::helpers::*;

fn versions(v: Published) -> Versions {
    Versions {
        root: v.root,
        timestamp: v.timestamp,
        snapshot: v.snapshot,
        targets: v.targets,
    }
}

#[test]
fn fresh_refresh_then_download() {
    let p = Publisher::new();
    let published = p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    let mut client = device.client(&p.repo);

    let refreshed = client.refresh(at(1)).unwrap();
    assert_eq!(refreshed.versions, versions(published.versions));
    assert_eq!(refreshed.reference_time, at(1));
    assert_eq!(refreshed.new_roots, 0);
    assert!(refreshed.changed);
    assert!(!refreshed.fast_forward_recovery);

    let (bundle, index) = release_bytes(1);
    let mut out = Vec::new();
    let n = client.download_target("kiosk-1.bundle", &mut out).unwrap();
    assert_eq!((n, &out), (bundle.len() as u64, &bundle));
    assert_eq!(client.fetch_target_bytes("kiosk-1.index").unwrap(), index);
    assert_eq!(
        client.target_path("kiosk-1.bundle").unwrap(),
        format!("targets/{}.kiosk-1.bundle", sha256_hex(&bundle))
    );
    assert_eq!(client.targets().unwrap().len(), 2);
    assert!(client.target("kiosk-2.bundle").unwrap().is_none());
    let err = client
        .download_target("kiosk-2.bundle", &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTarget { .. }), "{err}");

    // The store holds exactly the files the repository served, under unversioned names.
    let v = published.versions;
    assert_eq!(device.stored(Role::Root).unwrap(), p.root(1));
    assert_eq!(
        device.stored(Role::Timestamp).unwrap(),
        p.file("metadata/timestamp.json")
    );
    assert_eq!(
        device.stored(Role::Snapshot).unwrap(),
        p.file(&format!("metadata/{}.snapshot.json", v.snapshot))
    );
    assert_eq!(
        device.stored(Role::Targets).unwrap(),
        p.file(&format!("metadata/{}.targets.json", v.targets))
    );
    let store = MetadataStore::open(&device.store).unwrap();
    assert_eq!(store.last_trusted_time().unwrap(), Some(at(1)));
}

#[test]
fn nothing_is_trusted_before_a_refresh_or_after_a_failed_one() {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    let mut client = device.client(&p.repo);
    assert!(matches!(client.targets(), Err(Error::NotRefreshed)));
    client.refresh(at(1)).unwrap();
    assert!(client.target("kiosk-1.bundle").unwrap().is_some());
    // Two days later the timestamp has expired: the refresh fails and nothing is usable.
    assert!(client.refresh(at(48)).is_err());
    assert!(matches!(
        client.download_target("kiosk-1.bundle", &mut Vec::new()),
        Err(Error::NotRefreshed)
    ));
}

#[test]
fn second_refresh_with_nothing_new_fetches_only_the_root_probe_and_the_timestamp() {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    let before = listing(&device.store);

    let transport = Recording::new(&p.repo);
    let log = transport.log.clone();
    let mut client = device.client_with(transport, Limits::default());
    let refreshed = client.refresh(at(2)).unwrap();
    assert!(!refreshed.changed);
    assert_eq!(
        *log.borrow(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );
    // Only the last trusted time moved.
    let mut after = listing(&device.store);
    let mut before = before;
    assert_ne!(
        after.remove(std::path::Path::new("last-trusted-time")),
        before.remove(std::path::Path::new("last-trusted-time"))
    );
    assert_eq!(after, before);
    assert!(client.target("kiosk-1.bundle").unwrap().is_some());

    // A new release: the new snapshot and targets are fetched, the old release still listed.
    let published = p.add_release(2, at(3));
    log.borrow_mut().clear();
    let refreshed = client.refresh(at(4)).unwrap();
    assert!(refreshed.changed);
    assert_eq!(refreshed.versions, versions(published.versions));
    let v = published.versions;
    assert_eq!(
        *log.borrow(),
        [
            "metadata/2.root.json".to_string(),
            "metadata/timestamp.json".to_string(),
            format!("metadata/{}.snapshot.json", v.snapshot),
            format!("metadata/{}.targets.json", v.targets),
        ]
    );
    let (bundle, _) = release_bytes(2);
    assert_eq!(client.fetch_target_bytes("kiosk-2.bundle").unwrap(), bundle);
    assert!(client.target("kiosk-1.bundle").unwrap().is_some());
}

#[test]
fn root_rotation_chain_1_2_3_is_accepted() {
    let p = Publisher::new();
    p.add_release(1, t0());
    p.rotate(Role::Root, at(1));
    p.rotate(Role::Root, at(2));
    let root3 = parse_root(&p.root(3));
    let root1 = parse_root(&p.root(1));
    assert_ne!(
        root1.role_keys(Role::Root).unwrap().keyids,
        root3.role_keys(Role::Root).unwrap().keyids,
        "the chain changes the root keys"
    );

    let device = Device::new(&p.root(1));
    let mut client = device.client(&p.repo);
    let refreshed = client.refresh(at(3)).unwrap();
    assert_eq!(refreshed.new_roots, 2);
    assert_eq!(refreshed.versions.root, 3);
    assert!(
        !refreshed.fast_forward_recovery,
        "only the root keys changed"
    );
    assert_eq!(device.stored(Role::Root).unwrap(), p.root(3));
    let (bundle, _) = release_bytes(1);
    assert_eq!(client.fetch_target_bytes("kiosk-1.bundle").unwrap(), bundle);
}

#[test]
fn root_chain_longer_than_the_cap_continues_on_the_next_refresh() {
    let p = Publisher::new();
    p.add_release(1, t0());
    p.rotate(Role::Root, at(1));
    p.rotate(Role::Root, at(2));
    let device = Device::new(&p.root(1));
    let limits = Limits {
        max_root_rotations: 1,
        ..Limits::default()
    };
    let mut client = device.client_with(flipside_tuf::client::FsTransport::new(&p.repo), limits);
    let refreshed = client.refresh(at(3)).unwrap();
    assert_eq!((refreshed.new_roots, refreshed.versions.root), (1, 2));
    assert_eq!(device.stored(Role::Root).unwrap(), p.root(2));
    let refreshed = client.refresh(at(4)).unwrap();
    assert_eq!((refreshed.new_roots, refreshed.versions.root), (1, 3));
}

#[test]
fn a_root_accepted_before_a_refused_timestamp_is_kept() {
    // 5.3.8: each verified root is persisted at once; only the files after it stay as they were.
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    p.rotate(Role::Root, at(2));
    let mirror = p.mirror();
    let mut timestamp = mirror.timestamp();
    timestamp.version += 1;
    mirror.put_timestamp(timestamp, &[&unknown_key()]);

    let before = listing(&device.store);
    let err = device.refresh(&mirror.dir, at(3)).unwrap_err();
    assert!(matches!(
        refusal(&err, Role::Timestamp),
        flipside_tuf::Error::ThresholdNotMet { .. }
    ));
    let mut after = listing(&device.store);
    assert_eq!(
        after.remove(std::path::Path::new("root.json")).unwrap(),
        p.root(2)
    );
    let mut before = before;
    before.remove(std::path::Path::new("root.json"));
    assert_eq!(after, before);
    // The honest repository then goes on from root 2.
    let refreshed = device.refresh(&p.repo, at(4)).unwrap();
    assert_eq!((refreshed.new_roots, refreshed.versions.root), (0, 2));
}

#[test]
fn fast_forward_timestamp_recovered_by_timestamp_key_rotation() {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();

    // An attacker with the timestamp key inflates its version; the device accepts it (it is
    // validly signed and names the real snapshot).
    let mirror = p.mirror();
    let mut inflated = mirror.timestamp();
    inflated.version = 1000;
    mirror.put_timestamp(inflated, &[&p.key(Role::Timestamp)]);
    let refreshed = device.refresh(&mirror.dir, at(2)).unwrap();
    assert_eq!(refreshed.versions.timestamp, 1000);

    // The repository's real timestamps now look like rollbacks: the device is frozen.
    p.resign(&[], at(3));
    let err = device.refused(&p.repo, at(4));
    assert!(matches!(
        refusal(&err, Role::Timestamp),
        flipside_tuf::Error::Rollback { .. }
    ));

    // Rotating the timestamp key makes the device forget the inflated timestamp.
    let published = p.rotate(Role::Timestamp, at(5));
    let refreshed = device.refresh(&p.repo, at(6)).unwrap();
    assert!(refreshed.fast_forward_recovery);
    assert_eq!(refreshed.versions, versions(published.versions));
    assert!(refreshed.versions.timestamp < 1000);
    assert_eq!(
        device.stored(Role::Timestamp).unwrap(),
        p.file("metadata/timestamp.json")
    );
    // And the next refresh is an ordinary one again.
    let refreshed = device.refresh(&p.repo, at(7)).unwrap();
    assert!(!refreshed.fast_forward_recovery && !refreshed.changed);
}

#[test]
fn fast_forward_snapshot_recovered_by_snapshot_key_rotation() {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();

    // An attacker with the snapshot and timestamp keys inflates both versions.
    let mirror = p.mirror();
    let mut snapshot = mirror.snapshot();
    snapshot.version = 1000;
    let entry = mirror.put_snapshot(snapshot, &[&p.key(Role::Snapshot)]);
    let mut timestamp = mirror.timestamp();
    timestamp.version = 1000;
    timestamp.meta.insert("snapshot.json".to_string(), entry);
    mirror.put_timestamp(timestamp, &[&p.key(Role::Timestamp)]);
    let refreshed = device.refresh(&mirror.dir, at(2)).unwrap();
    assert_eq!(refreshed.versions.snapshot, 1000);

    p.add_release(2, at(3));
    let err = device.refused(&p.repo, at(4));
    assert!(matches!(
        refusal(&err, Role::Timestamp),
        flipside_tuf::Error::Rollback { .. }
    ));

    let published = p.rotate(Role::Snapshot, at(5));
    let refreshed = device.refresh(&p.repo, at(6)).unwrap();
    assert!(refreshed.fast_forward_recovery);
    assert_eq!(refreshed.versions, versions(published.versions));
    let (bundle, _) = release_bytes(2);
    let mut client = device.client(&p.repo);
    client.refresh(at(6)).unwrap();
    assert_eq!(client.fetch_target_bytes("kiosk-2.bundle").unwrap(), bundle);
}

#[test]
fn store_init_checks_the_pinned_root_and_open_or_init_keeps_a_newer_root() {
    let p = Publisher::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tuf");

    // A root not signed by its own keys is refused; so is one with a flipped byte.
    let mut unsigned = p.root(1);
    let at_sig = find(&unsigned, b"\"sig\": \"") + 8;
    unsigned[at_sig] = if unsigned[at_sig] == b'0' { b'1' } else { b'0' };
    let err = MetadataStore::init(&dir, &unsigned).unwrap_err();
    assert!(matches!(err, Error::TrustedRoot { .. }), "{err}");
    let err = MetadataStore::init(&dir, &p.file("metadata/timestamp.json")).unwrap_err();
    assert!(matches!(err, Error::TrustedRoot { .. }), "{err}");

    MetadataStore::init(&dir, &p.root(1)).unwrap();
    let err = MetadataStore::init(&dir, &p.root(1)).unwrap_err();
    assert!(matches!(err, Error::AlreadyInitialised { .. }), "{err}");

    // After the device followed the chain to root 2, the pinned root 1 does not replace it.
    p.rotate(Role::Root, at(1));
    let store = MetadataStore::open_or_init(&dir, &p.root(1)).unwrap();
    let mut client = flipside_tuf::client::Client::new(
        store,
        flipside_tuf::client::FsTransport::new(&p.repo),
        Limits::default(),
    );
    client.refresh(at(2)).unwrap();
    let store = MetadataStore::open_or_init(&dir, &p.root(1)).unwrap();
    assert_eq!(store.read(Role::Root).unwrap().unwrap(), p.root(2));
}

#[test]
fn a_timestamp_naming_the_trusted_snapshot_reuses_it() {
    // A repository that re-signs only the timestamp: the cached snapshot and targets are the
    // final ones and are not fetched again.
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    let mirror = p.mirror();
    let entry: MetaFile = mirror.timestamp().snapshot_meta().unwrap().clone();
    mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));

    let transport = Recording::new(&mirror.dir);
    let log = transport.log.clone();
    let refreshed = device
        .client_with(transport, Limits::default())
        .refresh(at(2))
        .unwrap();
    assert!(refreshed.changed);
    assert_eq!(
        *log.borrow(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );
    assert_eq!(
        device.stored(Role::Timestamp).unwrap(),
        mirror.read("metadata/timestamp.json")
    );
}

#[test]
fn fast_forward_recovered_even_when_the_inflating_key_stays_trusted() {
    // 5.3.11 by the keys, not by verification: the online signer (key A) was abused to
    // inflate the timestamp; the repository adds a key to the timestamp role and keeps A.
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    let key_a = p.key(Role::Timestamp);
    let mirror = p.mirror();
    let mut inflated = mirror.timestamp();
    inflated.version = 1000;
    mirror.put_timestamp(inflated, &[&key_a]);
    device.refresh(&mirror.dir, at(2)).unwrap();

    p.resign(&[], at(3));
    let recovered = p.mirror();
    let added = unknown_key();
    let mut root = parse_root(&p.root(1));
    root.version = 2;
    root.keys
        .insert(added.key_id().clone(), added.public().clone());
    let timestamp_keys = root.roles.get_mut("timestamp").unwrap();
    timestamp_keys.keyids.push(added.key_id().clone());
    recovered.write("metadata/2.root.json", &sign(root, &[&p.key(Role::Root)]));

    // A refusal after root 2 was accepted must not keep the inflated timestamp either.
    recovered.write("metadata/3.root.json", b"{}");
    let err = device.refresh(&recovered.dir, at(4)).unwrap_err();
    assert!(matches!(
        refusal(&err, Role::Root),
        flipside_tuf::Error::Parse { .. }
    ));
    assert_eq!(
        device.stored(Role::Root).unwrap(),
        recovered.read("metadata/2.root.json")
    );
    assert_eq!(device.stored(Role::Timestamp), None);
    std::fs::remove_file(recovered.dir.join("metadata/3.root.json")).unwrap();

    // The cached timestamp still verifies under root 2, yet it was dropped.
    let refreshed = device.refresh(&recovered.dir, at(4)).unwrap();
    assert_eq!(refreshed.versions.root, 2);
    assert!(refreshed.versions.timestamp < 1000);
}

#[test]
fn reads_a_repository_made_by_python_tuf() {
    // tests/data/python-tuf (see its README), laid out as a consistent-snapshot repository.
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/python-tuf");
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("metadata")).unwrap();
    std::fs::create_dir_all(repo.join("targets")).unwrap();
    for name in [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "timestamp.json",
    ] {
        std::fs::copy(data.join(name), repo.join("metadata").join(name)).unwrap();
    }
    let bundle = std::fs::read(data.join("kiosk-1.bundle")).unwrap();
    let target = format!("targets/{}.kiosk-1.bundle", sha256_hex(&bundle));
    std::fs::write(repo.join(&target), &bundle).unwrap();

    let device = Device::new(&std::fs::read(data.join("1.root.json")).unwrap());
    let mut client = device.client(&repo);
    let refreshed = client.refresh(t0()).unwrap();
    assert_eq!(
        refreshed.versions,
        Versions {
            root: 1,
            timestamp: 1,
            snapshot: 1,
            targets: 1
        }
    );
    assert_eq!(client.target_path("kiosk-1.bundle").unwrap(), target);
    assert_eq!(client.fetch_target_bytes("kiosk-1.bundle").unwrap(), bundle);
}
