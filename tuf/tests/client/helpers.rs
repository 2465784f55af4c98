//! Helpers: a publisher (flipside-repository with its keys) on a fixed clock, attackers'
//! mirrors copied from it with metadata re-signed by its keys, devices with a metadata
//! store, a transport that records what it fetched, and directory listings.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use chrono::{DateTime, TimeDelta, Utc};
use flipside_contract::release::{file_names, FileInfo, ImageInfo, Release, RELEASE_FORMAT};
use flipside_repository::layout::LOCK_FILE;
use flipside_repository::{InitSettings, KeyDir, Published, Repository};
use flipside_tuf::client::{
    Client, Error, FsTransport, Limits, MetadataStore, Refreshed, Transport, TransportError,
};
use flipside_tuf::metadata::RoleMetadata;
use flipside_tuf::{MetaFile, Metadata, Role, Root, SigningKey, Snapshot, Targets, Timestamp};

/// The publisher's clock: every repository starts here.
pub fn t0() -> DateTime<Utc> {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

/// `t0` plus some hours.
pub fn at(hours: i64) -> DateTime<Utc> {
    t0() + TimeDelta::hours(hours)
}

pub use flipside_test_support::sha256_hex;

/// The bundle and index bytes of release `version` (deterministic, a few kilobytes).
pub fn release_bytes(version: u64) -> (Vec<u8>, Vec<u8>) {
    let bundle = format!("bundle of release {version}\n")
        .repeat(400)
        .into_bytes();
    let index = format!("index of release {version}\n")
        .repeat(10)
        .into_bytes();
    (bundle, index)
}

/// A repository made by flipside-repository, with its keys.
pub struct Publisher {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub keys: KeyDir,
    mirrors: RefCell<u32>,
}

impl Publisher {
    /// `init` at `t0` with one key per role (expiry: timestamp 1 day, snapshot 7, targets 90,
    /// root 365).
    pub fn new() -> Self {
        Self::with_settings(&InitSettings::default())
    }

    pub fn with_settings(settings: &InitSettings) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let keys = KeyDir::new(tmp.path().join("keys"));
        Repository::create(&repo)
            .unwrap()
            .init(&keys, settings, t0())
            .unwrap();
        Publisher {
            tmp,
            repo,
            keys,
            mirrors: RefCell::new(0),
        }
    }

    pub fn open(&self) -> Repository {
        Repository::open(&self.repo).unwrap()
    }

    /// Publishes release `version` of `kiosk` (see [`release_bytes`]).
    pub fn add_release(&self, version: u64, when: DateTime<Utc>) -> Published {
        let dir = self.tmp.path().join("releases").join(version.to_string());
        let (bundle, index) = release_bytes(version);
        write_release(&dir, version, &bundle, &index);
        self.open().add(&self.keys, &dir, when).unwrap()
    }

    pub fn resign(&self, roles: &[Role], when: DateTime<Utc>) -> Published {
        self.open().resign(&self.keys, roles, when).unwrap()
    }

    pub fn rotate(&self, role: Role, when: DateTime<Utc>) -> Published {
        self.open().rotate_key(&self.keys, role, when).unwrap()
    }

    /// A file of the repository, by path relative to it.
    pub fn file(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.repo.join(path)).unwrap()
    }

    /// `metadata/{version}.root.json`.
    pub fn root(&self, version: u64) -> Vec<u8> {
        self.file(&format!("metadata/{version}.root.json"))
    }

    /// The first current key of `role`.
    pub fn key(&self, role: Role) -> SigningKey {
        self.keys.read_role(role).unwrap().remove(0).key
    }

    /// A copy of the repository as it is now: an attacker's (or a stale) mirror.
    pub fn mirror(&self) -> Mirror {
        let n = {
            let mut n = self.mirrors.borrow_mut();
            *n += 1;
            *n
        };
        let dir = self.tmp.path().join(format!("mirror-{n}"));
        copy_dir(&self.repo, &dir);
        std::fs::remove_file(dir.join(LOCK_FILE)).ok();
        Mirror { dir }
    }
}

/// Writes `release.json`, the bundle and the index of release `version` of `kiosk`.
fn write_release(dir: &Path, version: u64, bundle: &[u8], index: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let (bundle_name, index_name) = file_names("kiosk", version);
    std::fs::write(dir.join(&bundle_name), bundle).unwrap();
    std::fs::write(dir.join(&index_name), index).unwrap();
    let release = Release {
        format: RELEASE_FORMAT,
        name: "kiosk".to_string(),
        version,
        display_version: format!("1.{version}"),
        hardware_id: "qemu-x86_64".to_string(),
        architecture: Default::default(),
        image: ImageInfo {
            filesystem: "squashfs".to_string(),
            length: 4096,
            sha256: sha256_hex(b"image"),
        },
        bundle: FileInfo {
            name: bundle_name,
            length: bundle.len() as u64,
            sha256: sha256_hex(bundle),
        },
        index: FileInfo {
            name: index_name,
            length: index.len() as u64,
            sha256: sha256_hex(index),
        },
        init: "/init".to_string(),
        closure: Vec::new(),
        kernel: None,
        allow_rollback: false,
    };
    std::fs::write(
        dir.join("release.json"),
        serde_json::to_vec_pretty(&release).unwrap(),
    )
    .unwrap();
}

/// A copy of a repository that tests edit.
pub struct Mirror {
    pub dir: PathBuf,
}

impl Mirror {
    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(path)).unwrap()
    }

    pub fn write(&self, path: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join(path), bytes).unwrap();
    }

    pub fn timestamp(&self) -> Timestamp {
        parse(&self.read("metadata/timestamp.json"))
    }

    /// The snapshot the timestamp names.
    pub fn snapshot(&self) -> Snapshot {
        let version = self.timestamp().snapshot_meta().unwrap().version;
        parse(&self.read(&format!("metadata/{version}.snapshot.json")))
    }

    /// The targets the snapshot names.
    pub fn targets(&self) -> Targets {
        let version = self.snapshot().targets_meta().unwrap().version;
        parse(&self.read(&format!("metadata/{version}.targets.json")))
    }

    /// Writes `timestamp` signed by `keys` as `timestamp.json`.
    pub fn put_timestamp(&self, timestamp: Timestamp, keys: &[&SigningKey]) {
        self.write("metadata/timestamp.json", &sign(timestamp, keys));
    }

    /// Writes `snapshot` signed by `keys` as `{version}.snapshot.json`; returns its entry.
    pub fn put_snapshot(&self, snapshot: Snapshot, keys: &[&SigningKey]) -> MetaFile {
        let version = snapshot.version;
        let bytes = sign(snapshot, keys);
        self.write(&format!("metadata/{version}.snapshot.json"), &bytes);
        MetaFile::of_bytes(version, &bytes)
    }

    /// Writes `targets` signed by `keys` as `{version}.targets.json`; returns its entry.
    pub fn put_targets(&self, targets: Targets, keys: &[&SigningKey]) -> MetaFile {
        let version = targets.version;
        let bytes = sign(targets, keys);
        self.write(&format!("metadata/{version}.targets.json"), &bytes);
        MetaFile::of_bytes(version, &bytes)
    }

    /// A new timestamp (version + 1, same expiry) naming `snapshot`, signed by `key`.
    pub fn put_timestamp_naming(&self, snapshot: MetaFile, key: &SigningKey) {
        let mut timestamp = self.timestamp();
        timestamp.version += 1;
        timestamp.meta.insert("snapshot.json".to_string(), snapshot);
        self.put_timestamp(timestamp, &[key]);
    }

    /// Republishes the targets with `edit` applied, through a new snapshot and timestamp,
    /// all signed with the publisher's keys (a publisher bug or stolen keys).
    pub fn republish_targets(&self, publisher: &Publisher, edit: impl FnOnce(&mut Targets)) {
        let mut targets = self.targets();
        targets.version += 1;
        edit(&mut targets);
        let entry = self.put_targets(targets, &[&publisher.key(Role::Targets)]);
        let mut snapshot = self.snapshot();
        snapshot.version += 1;
        snapshot.meta.insert("targets.json".to_string(), entry);
        let entry = self.put_snapshot(snapshot, &[&publisher.key(Role::Snapshot)]);
        self.put_timestamp_naming(entry, &publisher.key(Role::Timestamp));
    }
}

/// Signs `signed` and returns the file bytes.
pub fn sign<T: RoleMetadata>(signed: T, keys: &[&SigningKey]) -> Vec<u8> {
    Metadata::sign(signed, keys).unwrap().to_bytes().unwrap()
}

/// The `signed` part of metadata bytes (not verified).
pub fn parse<T: RoleMetadata>(bytes: &[u8]) -> T {
    Metadata::<T>::from_slice(bytes).unwrap().signed
}

/// The root a publisher's root file describes.
pub fn parse_root(bytes: &[u8]) -> Root {
    parse(bytes)
}

/// A device: its metadata store, initialised with a pinned root.
pub struct Device {
    pub tmp: tempfile::TempDir,
    pub store: PathBuf,
}

impl Device {
    pub fn new(pinned_root: &[u8]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("tuf");
        MetadataStore::init(&store, pinned_root).unwrap();
        Device { tmp, store }
    }

    pub fn client_with(&self, transport: impl Transport + 'static, limits: Limits) -> Client {
        Client::new(MetadataStore::open(&self.store).unwrap(), transport, limits)
    }

    /// A client reading the repository in `repo` with the default limits.
    pub fn client(&self, repo: &Path) -> Client {
        self.client_with(FsTransport::new(repo), Limits::default())
    }

    pub fn refresh(&self, repo: &Path, now: DateTime<Utc>) -> Result<Refreshed, Error> {
        self.client(repo).refresh(now)
    }

    /// A refresh of `repo` that must be refused. The refused role, every role after it and
    /// the last trusted time are left byte for byte; only top-level roles verified before the
    /// refused one may have been replaced (each is persisted as soon as it verifies).
    pub fn refused(&self, repo: &Path, now: DateTime<Utc>) -> Error {
        self.refused_with(FsTransport::new(repo), Limits::default(), now)
    }

    pub fn refused_with(
        &self,
        transport: impl Transport + 'static,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Error {
        let before = listing(&self.store);
        let result = self.client_with(transport, limits).refresh(now);
        let err = match result {
            Ok(refreshed) => panic!("the refresh was accepted: {refreshed:?}"),
            Err(err) => err,
        };
        let after = listing(&self.store);
        let kept_earlier = |name: &Path| {
            let refused = refused_role(&err);
            [Role::Timestamp, Role::Snapshot]
                .into_iter()
                .filter(|role| refused.is_some_and(|r| order(*role) < order(r)))
                .any(|role| name == Path::new(&format!("{role}.json")))
        };
        let changed: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|name| before.get(*name) != after.get(*name) && !kept_earlier(name))
            .collect();
        assert!(
            changed.is_empty(),
            "the store changed after the refusal ({err}): {changed:?}"
        );
        err
    }

    /// The store's trusted file of `role`.
    pub fn stored(&self, role: Role) -> Option<Vec<u8>> {
        MetadataStore::open(&self.store)
            .unwrap()
            .read(role)
            .unwrap()
    }
}

/// The top-level role a refresh error names (a refusal, or a file of it that could not be
/// fetched), if any.
pub fn refused_role(err: &Error) -> Option<Role> {
    let path = match err {
        Error::Metadata { role, .. } => return Some(*role),
        Error::Missing { path, .. } | Error::Fetch { path, .. } | Error::TooLarge { path, .. } => {
            path
        }
        _ => return None,
    };
    Role::ALL
        .into_iter()
        .find(|role| path.ends_with(&format!("{role}.json")))
}

/// The position of `role` in the update order of a refresh.
fn order(role: Role) -> usize {
    [Role::Root, Role::Timestamp, Role::Snapshot, Role::Targets]
        .iter()
        .position(|r| *r == role)
        .unwrap()
}

/// Every file under `dir` (recursively) with its content.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A transport over a directory that records every path asked for.
pub struct Recording {
    inner: FsTransport,
    pub log: Rc<RefCell<Vec<String>>>,
}

impl Recording {
    pub fn new(repo: &Path) -> Self {
        Recording {
            inner: FsTransport::new(repo),
            log: Rc::default(),
        }
    }
}

impl Transport for Recording {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Box<dyn Read + '_>, TransportError> {
        self.log.borrow_mut().push(path.to_string());
        self.inner.fetch(path, max_len)
    }
}

/// A transport over a directory, except that one path streams bytes without end.
pub struct Endless {
    pub inner: FsTransport,
    pub path: String,
}

impl Transport for Endless {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Box<dyn Read + '_>, TransportError> {
        if path == self.path {
            return Ok(Box::new(std::io::repeat(b' ')));
        }
        self.inner.fetch(path, max_len)
    }
}

/// The verification failure behind a refusal of `role`'s metadata; panics on anything else.
pub fn refusal(err: &Error, role: Role) -> &flipside_tuf::Error {
    match err {
        Error::Metadata {
            role: r, source, ..
        } if *r == role => source,
        other => panic!("expected a refusal of {role} metadata, got: {other:?}"),
    }
}

/// A key no role of any root lists.
pub fn unknown_key() -> SigningKey {
    SigningKey::from_seed(&[0x5a; 32])
}

/// Offset of the first `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}
