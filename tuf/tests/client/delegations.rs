//! Delegated targets through the client (5.6.7) over a repository written here by hand with
//! the crate's own signing (the publisher crate does not delegate): the search fetches the
//! delegated role by its consistent-snapshot name, keeps it in the store under a safe file
//! name, reuses it while the snapshot names it, replaces a damaged copy, and honours the
//! delegation cap.

use std::collections::BTreeMap;
use std::path::Path;

use flipside_tuf::client::{Limits, MetadataStore};
use flipside_tuf::metadata::Extra;
use flipside_tuf::{
    DelegatedRole, Delegations, MetaFile, Metadata, PublicKey, Role, RoleKeys, Root, SigningKey,
    Snapshot, SuccinctRoles, TargetFile, Targets, Timestamp,
};

use crate::helpers::{at, sha256_hex, Device, Recording};

const APP: &[u8] = b"a delegated app\n";
/// A role name that is not a file name: it must be stored percent-encoded.
const ROLE: &str = "apps/stable";

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn write(repo: &Path, name: &str, bytes: &[u8]) {
    let path = repo.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes the repository; returns the pinned root.
fn publish(repo: &Path) -> Vec<u8> {
    let expires = at(24 * 365);
    let top: Vec<SigningKey> = (1..=4).map(key).collect();
    let delegated = key(9);
    let roles: BTreeMap<Role, RoleKeys> = Role::ALL
        .into_iter()
        .zip(&top)
        .map(|(role, k)| {
            let keys = RoleKeys {
                keyids: vec![k.key_id().clone()],
                threshold: 1,
                extra: Extra::new(),
            };
            (role, keys)
        })
        .collect();
    let keys = top
        .iter()
        .map(|k| (k.key_id().clone(), k.public().clone()))
        .collect();
    let root = Metadata::sign(Root::new(1, expires, keys, roles), &[&top[0]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/1.root.json", &root);

    let mut targets = Targets::new(1, expires);
    targets.delegations = Some(Delegations {
        keys: BTreeMap::from([(delegated.key_id().clone(), delegated.public().clone())]),
        roles: vec![DelegatedRole {
            name: ROLE.to_string(),
            keyids: vec![delegated.key_id().clone()],
            threshold: 1,
            terminating: true,
            paths: Some(vec!["apps/*".to_string()]),
            path_hash_prefixes: None,
            extra: Extra::new(),
        }],
        succinct_roles: None,
        extra: Extra::new(),
    });
    let targets = Metadata::sign(targets, &[&top[1]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/1.targets.json", &targets);

    let mut apps = Targets::new(1, expires);
    apps.targets.insert(
        "apps/app.tgz".to_string(),
        TargetFile::new(APP.len() as u64, &sha256_hex(APP), None),
    );
    let apps = Metadata::sign(apps, &[&delegated])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/1.apps%2Fstable.json", &apps);
    write(
        repo,
        &format!("targets/apps/{}.app.tgz", sha256_hex(APP)),
        APP,
    );

    let mut snapshot = Snapshot::new(1, expires, MetaFile::of_bytes(1, &targets));
    snapshot
        .meta
        .insert(format!("{ROLE}.json"), MetaFile::of_bytes(1, &apps));
    let snapshot = Metadata::sign(snapshot, &[&top[2]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/1.snapshot.json", &snapshot);
    let timestamp = Timestamp::new(1, expires, MetaFile::of_bytes(1, &snapshot));
    let timestamp = Metadata::sign(timestamp, &[&top[3]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/timestamp.json", &timestamp);
    root
}

#[test]
fn delegated_target_is_fetched_stored_reused_and_replaced_when_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let device = Device::new(&publish(&repo));
    let fetched = |device: &Device| {
        let recording = Recording::new(&repo);
        let log = recording.log.clone();
        let mut client = device.client_with(recording, Limits::default());
        client.refresh(at(1)).unwrap();
        let mut out = Vec::new();
        client.download_target("apps/app.tgz", &mut out).unwrap();
        assert_eq!(out, APP);
        // Outside the delegated patterns, and inside them but unlisted (terminating).
        assert_eq!(client.target("other.tgz").unwrap(), None);
        assert_eq!(client.target("apps/other.tgz").unwrap(), None);
        let log = log.borrow().clone();
        log.iter()
            .filter(|p| p.ends_with("apps%2Fstable.json"))
            .count()
    };
    assert_eq!(fetched(&device), 1, "fetched once by its consistent name");
    let stored = device.store.join("apps%2Fstable.json");
    assert!(stored.is_file());
    let store = MetadataStore::open(&device.store).unwrap();
    assert_eq!(
        store.read_delegated("apps%2Fstable").unwrap().as_deref(),
        Some(&std::fs::read(&stored).unwrap()[..])
    );
    // The stored copy is the one the snapshot names: not fetched again.
    assert_eq!(fetched(&device), 0);
    // A damaged copy is not trusted: fetched again, verified, and stored over it.
    std::fs::write(&stored, b"{}").unwrap();
    assert_eq!(fetched(&device), 1);
    assert_ne!(std::fs::read(&stored).unwrap(), b"{}");
}

#[test]
fn delegation_cap_and_a_tampered_delegated_role() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let device = Device::new(&publish(&repo));
    // A cap of one role searches the top-level targets only.
    let limits = Limits {
        max_delegations: 1,
        ..Limits::default()
    };
    let mut client = device.client_with(Recording::new(&repo), limits);
    client.refresh(at(1)).unwrap();
    assert_eq!(client.target("apps/app.tgz").unwrap(), None);
    // One byte changed in the delegated role: refused (its hash in the snapshot differs).
    let path = repo.join("metadata/1.apps%2Fstable.json");
    let mut bytes = std::fs::read(&path).unwrap();
    let last_one = bytes.iter().rposition(|&b| b == b'1').unwrap();
    bytes[last_one] = b'2';
    std::fs::write(&path, &bytes).unwrap();
    let mut client = device.client_with(Recording::new(&repo), Limits::default());
    client.refresh(at(1)).unwrap();
    let err = client.target("apps/app.tgz").unwrap_err();
    let source = err.tuf_error().expect("a verification refusal");
    assert!(
        matches!(
            source,
            flipside_tuf::Error::HashMismatch { .. } | flipside_tuf::Error::LengthMismatch { .. }
        ),
        "{err}"
    );
    assert!(!device.store.join("apps%2Fstable.json").exists());
}

/// A delegation of `name` to `signer` for `paths`.
fn delegate(name: &str, signer: &SigningKey, paths: &[&str]) -> (DelegatedRole, PublicKey) {
    let role = DelegatedRole {
        name: name.to_string(),
        keyids: vec![signer.key_id().clone()],
        threshold: 1,
        terminating: false,
        paths: Some(paths.iter().map(|p| p.to_string()).collect()),
        path_hash_prefixes: None,
        extra: Extra::new(),
    };
    (role, signer.public().clone())
}

fn delegations(to: &[(DelegatedRole, PublicKey)]) -> Option<Delegations> {
    Some(Delegations {
        keys: to
            .iter()
            .map(|(r, k)| (r.keyids[0].clone(), k.clone()))
            .collect(),
        roles: to.iter().map(|(r, _)| r.clone()).collect(),
        succinct_roles: None,
        extra: Extra::new(),
    })
}

/// Writes a repository whose top-level targets are `top`, with delegated roles
/// `(name, metadata, signer)`, each at version 1; returns the pinned root. With `consistent`
/// the root says `consistent_snapshot: true` and files have versioned names; without, the
/// root has no `consistent_snapshot` field and files have plain names.
fn publish_roles(
    repo: &Path,
    top: Targets,
    roles: Vec<(&str, Targets, &SigningKey)>,
    consistent: bool,
) -> Vec<u8> {
    let file = |name: &str| {
        if consistent {
            format!("metadata/1.{name}.json")
        } else {
            format!("metadata/{name}.json")
        }
    };
    let expires = at(24 * 365);
    let keys: Vec<SigningKey> = (1..=4).map(key).collect();
    let role_keys: BTreeMap<Role, RoleKeys> = Role::ALL
        .into_iter()
        .zip(&keys)
        .map(|(role, k)| {
            let keys = RoleKeys {
                keyids: vec![k.key_id().clone()],
                threshold: 1,
                extra: Extra::new(),
            };
            (role, keys)
        })
        .collect();
    let public = keys
        .iter()
        .map(|k| (k.key_id().clone(), k.public().clone()))
        .collect();
    let mut root = Root::new(1, expires, public, role_keys);
    root.consistent_snapshot = consistent.then_some(true);
    let root = Metadata::sign(root, &[&keys[0]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/1.root.json", &root);
    let top = Metadata::sign(top, &[&keys[1]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, &file("targets"), &top);
    let mut snapshot = Snapshot::new(1, expires, MetaFile::of_bytes(1, &top));
    for (name, md, signer) in roles {
        let bytes = Metadata::sign(md, &[signer]).unwrap().to_bytes().unwrap();
        write(repo, &file(name), &bytes);
        snapshot
            .meta
            .insert(format!("{name}.json"), MetaFile::of_bytes(1, &bytes));
    }
    let snapshot = Metadata::sign(snapshot, &[&keys[2]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, &file("snapshot"), &snapshot);
    let timestamp = Timestamp::new(1, expires, MetaFile::of_bytes(1, &snapshot));
    let timestamp = Metadata::sign(timestamp, &[&keys[3]])
        .unwrap()
        .to_bytes()
        .unwrap();
    write(repo, "metadata/timestamp.json", &timestamp);
    root
}

/// A diamond: `parent-a` and `parent-b` both delegate `release`, each to its own key and for
/// its own paths; `release` is signed by parent a's key only but lists targets of both.
fn diamond(repo: &Path) -> Vec<u8> {
    let expires = at(24 * 365);
    let (a, b, release_a, release_b) = (key(10), key(11), key(12), key(13));
    let mut top = Targets::new(1, expires);
    top.delegations = delegations(&[
        delegate("parent-a", &a, &["team-a/*"]),
        delegate("parent-b", &b, &["team-b/*"]),
    ]);
    let mut parent_a = Targets::new(1, expires);
    parent_a.delegations = delegations(&[delegate("release", &release_a, &["team-a/*"])]);
    let mut parent_b = Targets::new(1, expires);
    parent_b.delegations = delegations(&[delegate("release", &release_b, &["team-b/*"])]);
    let mut release = Targets::new(1, expires);
    for name in ["team-a/app", "team-b/app"] {
        release.targets.insert(
            name.to_string(),
            TargetFile::new(3, &sha256_hex(b"app"), None),
        );
    }
    publish_roles(
        repo,
        top,
        vec![
            ("parent-a", parent_a, &a),
            ("parent-b", parent_b, &b),
            ("release", release, &release_a),
        ],
        true,
    )
}

#[test]
fn a_role_reached_through_two_delegators_is_verified_against_each() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let root = diamond(&repo);
    let refused_through_b = |err: flipside_tuf::client::Error| {
        assert!(
            matches!(
                err.tuf_error(),
                Some(flipside_tuf::Error::ThresholdNotMet { .. })
            ),
            "{err}"
        );
    };
    // Through parent a first: `release` is verified and stored; reached again through parent
    // b in the same client, the stored copy does not carry parent a's trust over.
    for a_first in [true, false] {
        let device = Device::new(&root);
        let mut client = device.client(&repo);
        client.refresh(at(1)).unwrap();
        if a_first {
            assert!(client.target("team-a/app").unwrap().is_some());
            assert!(device.store.join("release.json").is_file());
            refused_through_b(client.target("team-b/app").unwrap_err());
            // And by a new client over the same store.
            let mut again = device.client(&repo);
            again.refresh(at(1)).unwrap();
            refused_through_b(again.target("team-b/app").unwrap_err());
        } else {
            refused_through_b(client.target("team-b/app").unwrap_err());
            assert!(client.target("team-a/app").unwrap().is_some());
        }
    }
}

#[test]
fn a_root_without_consistent_snapshot_means_plain_names() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let expires = at(24 * 365);
    let signer = key(20);
    let mut top = Targets::new(1, expires);
    top.delegations = delegations(&[delegate("apps", &signer, &["apps/*"])]);
    let mut apps = Targets::new(1, expires);
    apps.targets.insert(
        "apps/app.tgz".to_string(),
        TargetFile::new(APP.len() as u64, &sha256_hex(APP), None),
    );
    let root = publish_roles(&repo, top, vec![("apps", apps, &signer)], false);
    write(&repo, "targets/apps/app.tgz", APP);
    let device = Device::new(&root);
    let recording = Recording::new(&repo);
    let log = recording.log.clone();
    let mut client = device.client_with(recording, Limits::default());
    client.refresh(at(1)).unwrap();
    let mut out = Vec::new();
    client.download_target("apps/app.tgz", &mut out).unwrap();
    assert_eq!(out, APP);
    assert_eq!(
        *log.borrow(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/snapshot.json",
            "metadata/targets.json",
            "metadata/apps.json",
            "targets/apps/app.tgz",
        ]
    );
}

#[test]
fn succinct_roles_delegate_each_name_to_its_hashed_bin() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let expires = at(24 * 365);
    let bins = key(30);
    let mut top = Targets::new(1, expires);
    top.delegations = Some(Delegations {
        keys: BTreeMap::from([(bins.key_id().clone(), bins.public().clone())]),
        roles: Vec::new(),
        succinct_roles: Some(SuccinctRoles {
            keyids: vec![bins.key_id().clone()],
            threshold: 1,
            bit_length: 2,
            name_prefix: "bin".to_string(),
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    });
    // sha256("apps/a.tgz") starts with 0xd7: bin 3 of 4; "file1.txt" (0x55) is in bin 1.
    let mut bin_3 = Targets::new(1, expires);
    bin_3.targets.insert(
        "apps/a.tgz".to_string(),
        TargetFile::new(APP.len() as u64, &sha256_hex(APP), None),
    );
    bin_3.targets.insert(
        "file1.txt".to_string(),
        TargetFile::new(APP.len() as u64, &sha256_hex(APP), None),
    );
    let root = publish_roles(&repo, top, vec![("bin-3", bin_3, &bins)], true);
    write(
        &repo,
        &format!("targets/apps/{}.a.tgz", sha256_hex(APP)),
        APP,
    );
    let device = Device::new(&root);
    let recording = Recording::new(&repo);
    let log = recording.log.clone();
    let mut client = device.client_with(recording, Limits::default());
    client.refresh(at(1)).unwrap();
    let mut out = Vec::new();
    client.download_target("apps/a.tgz", &mut out).unwrap();
    assert_eq!(out, APP);
    assert_eq!(
        client.find_target("apps/a.tgz").unwrap().unwrap().role,
        "bin-3"
    );
    assert!(log.borrow().contains(&"metadata/1.bin-3.json".to_string()));
    // bin-3 also lists file1.txt, but file1.txt belongs to bin-1: bin-3 is not asked, and
    // bin-1 is not in the snapshot.
    let err = client.find_target("file1.txt").unwrap_err();
    assert!(err.to_string().contains("bin-1"), "{err}");
}
