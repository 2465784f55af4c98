//! Each top-level role is the trusted one as soon as it verifies: a new timestamp is kept when
//! the snapshot it names is then refused, a new snapshot when the targets are, so the next
//! refresh checks rollback against them. The last trusted time moves only on success.

use flipside_tuf::Role;

use crate::helpers::*;

/// Release 1 trusted by the device, release 2 published (a new timestamp, snapshot and
/// targets), and a copy of the repository to break.
fn release_two() -> (Publisher, Device, Mirror) {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    p.add_release(2, at(2));
    let mirror = p.mirror();
    (p, device, mirror)
}

/// The ways a snapshot (or targets) file named by verified metadata can fail.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// Signed by a key the root does not list, correctly named by its delegator.
    Signature,
    /// Bytes that are not the ones the delegator's hashes and length name.
    Hashes,
    /// Absent from the mirror (404).
    Missing,
    /// Served under its version's name with another version inside (named by version only).
    VersionInUrl,
}

const BREAKS: [Break; 4] = [
    Break::Signature,
    Break::Hashes,
    Break::Missing,
    Break::VersionInUrl,
];

fn break_snapshot(p: &Publisher, mirror: &Mirror, how: Break) {
    let version = mirror.timestamp().snapshot_meta().unwrap().version;
    let path = format!("metadata/{version}.snapshot.json");
    let snapshot = mirror.snapshot();
    match how {
        Break::Signature => {
            let entry = mirror.put_snapshot(snapshot, &[&unknown_key()]);
            mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));
        }
        Break::Hashes => {
            let mut bytes = mirror.read(&path);
            bytes.push(b' ');
            mirror.write(&path, &bytes);
        }
        Break::Missing => std::fs::remove_file(mirror.dir.join(&path)).unwrap(),
        Break::VersionInUrl => {
            let mut other = snapshot;
            other.version += 1;
            let bytes = sign(other, &[&p.key(Role::Snapshot)]);
            mirror.write(&path, &bytes);
            let mut entry = flipside_tuf::MetaFile::of_bytes(version, &bytes);
            entry.length = None;
            entry.hashes = None;
            mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));
        }
    }
}

fn break_targets(p: &Publisher, mirror: &Mirror, how: Break) {
    let version = mirror.snapshot().targets_meta().unwrap().version;
    let path = format!("metadata/{version}.targets.json");
    let targets = mirror.targets();
    let republish = |entry: flipside_tuf::MetaFile| {
        let mut snapshot = mirror.snapshot();
        snapshot.version += 1;
        snapshot.meta.insert("targets.json".to_string(), entry);
        let entry = mirror.put_snapshot(snapshot, &[&p.key(Role::Snapshot)]);
        mirror.put_timestamp_naming(entry, &p.key(Role::Timestamp));
    };
    match how {
        Break::Signature => republish(mirror.put_targets(targets, &[&unknown_key()])),
        Break::Hashes => {
            let mut bytes = mirror.read(&path);
            bytes.push(b' ');
            mirror.write(&path, &bytes);
        }
        Break::Missing => std::fs::remove_file(mirror.dir.join(&path)).unwrap(),
        Break::VersionInUrl => {
            let mut other = targets;
            other.version += 1;
            let bytes = sign(other, &[&p.key(Role::Targets)]);
            mirror.write(&path, &bytes);
            let mut entry = flipside_tuf::MetaFile::of_bytes(version, &bytes);
            entry.length = None;
            entry.hashes = None;
            republish(entry);
        }
    }
}

/// The snapshot the mirror's timestamp names, as served.
fn served_snapshot(mirror: &Mirror) -> Vec<u8> {
    let version = mirror.timestamp().snapshot_meta().unwrap().version;
    mirror.read(&format!("metadata/{version}.snapshot.json"))
}

#[test]
fn verified_timestamp_is_kept_when_its_snapshot_is_refused() {
    for how in BREAKS {
        let (p, device, mirror) = release_two();
        let old_snapshot = device.stored(Role::Snapshot);
        let old_targets = device.stored(Role::Targets);
        break_snapshot(&p, &mirror, how);
        let err = device.refused(&mirror.dir, at(3));
        assert_eq!(refused_role(&err), Some(Role::Snapshot), "{how:?}: {err}");
        assert_eq!(
            device.stored(Role::Timestamp).unwrap(),
            mirror.read("metadata/timestamp.json"),
            "{how:?}: the new timestamp is the trusted one"
        );
        assert_eq!(device.stored(Role::Snapshot), old_snapshot, "{how:?}");
        assert_eq!(device.stored(Role::Targets), old_targets, "{how:?}");
    }
}

#[test]
fn verified_snapshot_is_kept_when_its_targets_are_refused() {
    for how in BREAKS {
        let (p, device, mirror) = release_two();
        let old_targets = device.stored(Role::Targets);
        break_targets(&p, &mirror, how);
        let err = device.refused(&mirror.dir, at(3));
        assert_eq!(refused_role(&err), Some(Role::Targets), "{how:?}: {err}");
        assert_eq!(
            device.stored(Role::Timestamp).unwrap(),
            mirror.read("metadata/timestamp.json"),
            "{how:?}"
        );
        assert_eq!(
            device.stored(Role::Snapshot).unwrap(),
            served_snapshot(&mirror),
            "{how:?}: the new snapshot is the trusted one"
        );
        assert_eq!(device.stored(Role::Targets), old_targets, "{how:?}");
    }
}

#[test]
fn kept_timestamp_is_the_rollback_floor_of_the_next_refresh() {
    let p = Publisher::new();
    p.add_release(1, t0());
    let device = Device::new(&p.root(1));
    device.refresh(&p.repo, at(1)).unwrap();
    let release_one = p.mirror();
    p.add_release(2, at(2));
    let mirror = p.mirror();
    break_snapshot(&p, &mirror, Break::Missing);
    device.refused(&mirror.dir, at(3));
    // Release 1's timestamp was trusted before the failed refresh; now it is a rollback.
    let err = device.refused(&release_one.dir, at(3));
    assert!(
        matches!(
            refusal(&err, Role::Timestamp),
            flipside_tuf::Error::Rollback {
                role: Role::Timestamp,
                ..
            }
        ),
        "{err}"
    );
}
