//! Interoperability with the reference implementation: python-tuf's `ngclient` refreshes a
//! repository this crate made, downloads its targets, follows root and timestamp key
//! rotations from an old trusted root, and refuses tampered metadata and targets.
//!
//! The interpreter is `$FLIPSIDE_TEST_PYTHON` (default `python3`) with the `tuf` package;
//! `scripts/test.sh` installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use common::{listing, sha256_hex, Fixture, PartFiles};
use flipside_repository::{Error, InitSettings, Repository};
use flipside_tuf::Role;
use sha2::{Digest, Sha256};

fn python() -> String {
    std::env::var("FLIPSIDE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn require_python_tuf() {
    let out = Command::new(python())
        .args(["-c", "import tuf.ngclient"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test.sh, which installs python3 and tuf",
                python()
            )
        });
    assert!(
        out.status.success(),
        "`import tuf` failed in {}: {}; run scripts/test.sh, which installs the python tuf package",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a python-tuf client run ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Refused,
}

/// What the python client checks besides refreshing.
#[derive(Default)]
struct Checks<'a> {
    /// Targets to download, each compared with a file.
    downloads: &'a [(&'a str, &'a Path)],
    /// Targets that must not exist.
    absent: &'a [&'a str],
    /// Targets whose `custom.flipside.kind` must be the given one.
    kinds: &'a [(&'a str, &'a str)],
}

/// Runs the python client; panics on anything but success or a TUF refusal.
fn client(repo: &Path, root: &Path, cache: &Path, checks: &Checks) -> (Outcome, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg("--repo")
        .arg(repo)
        .arg("--root")
        .arg(root)
        .arg("--cache")
        .arg(cache);
    for (name, file) in checks.downloads {
        cmd.arg("--download")
            .arg(format!("{name}={}", file.display()));
    }
    for name in checks.absent {
        cmd.arg("--absent").arg(name);
    }
    for (name, kind) in checks.kinds {
        cmd.arg("--kind").arg(format!("{name}={kind}"));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => (Outcome::Ok, text),
        Some(2) => (Outcome::Refused, text),
        Some(3) => panic!("python tuf is missing: {text}; run scripts/test.sh, which installs it"),
        _ => panic!("python client failed ({}): {text}", out.status),
    }
}

/// Deterministic content of `len` bytes (a sha256 chain), different per `seed`.
fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

struct Interop {
    f: Fixture,
    /// The root a device would ship with.
    trusted_root: PathBuf,
}

impl Interop {
    /// A repository (real clock: python-tuf checks expiry against its own) with release 1.
    fn new() -> Self {
        require_python_tuf();
        let f = Fixture::empty();
        Repository::create(&f.repo)
            .unwrap()
            .init(&f.keys, &InitSettings::default(), Utc::now())
            .unwrap();
        let trusted_root = f.tmp.path().join("trusted-1.root.json");
        std::fs::copy(f.repo.join("metadata/1.root.json"), &trusted_root).unwrap();
        let it = Interop { f, trusted_root };
        it.add(1);
        it
    }

    /// Adds release `version` (a 1.5 MiB bundle, a small index); returns its directory.
    fn add(&self, version: u64) -> PathBuf {
        let bundle = content(&format!("bundle {version}"), 3 << 19);
        let index = content(&format!("index {version}"), 4099);
        let dir = self.f.release(version, &bundle, &index);
        self.f.open().add(&self.f.keys, &dir, Utc::now()).unwrap();
        dir
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.f.tmp.path().join("clients").join(name)
    }

    fn run(&self, cache: &str, downloads: &[(&str, &Path)], absent: &[&str]) -> (Outcome, String) {
        let checks = Checks {
            downloads,
            absent,
            ..Checks::default()
        };
        self.check(cache, &checks)
    }

    fn check(&self, cache: &str, checks: &Checks) -> (Outcome, String) {
        client(&self.f.repo, &self.trusted_root, &self.cache(cache), checks)
    }
}

#[test]
fn python_client_downloads_a_published_release() {
    let it = Interop::new();
    let rel = it.f.tmp.path().join("releases/1");
    let (outcome, text) = it.run(
        "fresh",
        &[
            ("kiosk-1.bundle", &rel.join("kiosk-1.bundle")),
            ("kiosk-1.index", &rel.join("kiosk-1.index")),
        ],
        &["kiosk-2.bundle"],
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(
        text.contains("refreshed: root 1 timestamp 2 snapshot 2 targets 2"),
        "{text}"
    );
    assert!(
        text.contains("downloaded kiosk-1.bundle: 1572864 bytes, identical"),
        "{text}"
    );
}

#[test]
fn python_client_downloads_all_four_targets_of_a_release_with_a_kernel_part() {
    let it = Interop::new();
    let (bundle, index) = (content("bundle 2", 3 << 19), content("index 2", 4099));
    let (kernel_bundle, kernel_index) = (
        content("kernel bundle 2", 11 << 20),
        content("kernel index 2", 2053),
    );
    let dir = it.f.release_with_kernel(
        2,
        &PartFiles {
            bundle: &bundle,
            index: &index,
            kernel_bundle: &kernel_bundle,
            kernel_index: &kernel_index,
        },
    );
    let published = it.f.open().add(&it.f.keys, &dir, Utc::now()).unwrap();
    assert_eq!(published.added.len(), 4);
    let names = [
        ("kiosk-2.bundle", "bundle"),
        ("kiosk-2.index", "index"),
        ("kiosk-2.kernel.bundle", "kernel-bundle"),
        ("kiosk-2.kernel.index", "kernel-index"),
    ];
    let files: Vec<_> = names.iter().map(|(n, _)| (*n, dir.join(n))).collect();
    let downloads: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let (outcome, text) = it.check(
        "kernel",
        &Checks {
            downloads: &downloads,
            kinds: &names,
            ..Checks::default()
        },
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(
        text.contains("refreshed: root 1 timestamp 3 snapshot 3 targets 3"),
        "{text}"
    );
    assert!(
        text.contains("downloaded kiosk-2.kernel.bundle: 11534336 bytes, identical"),
        "{text}"
    );
    for (name, kind) in names {
        assert!(
            text.contains(&format!(
                "custom {name}: kind {kind}, kernel 6.1.0-57-amd64 kiosk-2.kernel.bundle kiosk-2.kernel.index"
            )),
            "{text}"
        );
    }
}

#[test]
fn python_client_follows_root_and_timestamp_key_rotations() {
    let it = Interop::new();
    let rel1 = it.f.tmp.path().join("releases/1");
    let (outcome, text) = it.run(
        "device",
        &[("kiosk-1.bundle", &rel1.join("kiosk-1.bundle"))],
        &[],
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");

    it.f.open()
        .rotate_key(&it.f.keys, Role::Root, Utc::now())
        .unwrap();
    it.f.open()
        .rotate_key(&it.f.keys, Role::Timestamp, Utc::now())
        .unwrap();
    let rel2 = it.add(2);
    // The same client, still shipping root 1 and holding timestamp and snapshot signed with
    // the old keys, walks the root chain 1 -> 2 -> 3 and accepts the new timestamp key.
    let (outcome, text) = it.run(
        "device",
        &[("kiosk-2.bundle", &rel2.join("kiosk-2.bundle"))],
        &[],
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(text.contains("refreshed: root 3 "), "{text}");
    // A new client from root 1 gets there too.
    let (outcome, text) = it.run(
        "new",
        &[("kiosk-1.bundle", &rel1.join("kiosk-1.bundle"))],
        &[],
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");
}

#[test]
fn python_client_refuses_a_flipped_byte_in_targets_metadata() {
    let it = Interop::new();
    let rel = it.f.tmp.path().join("releases/1");
    let path = it.f.repo.join("metadata/2.targets.json");
    let good = std::fs::read(&path).unwrap();
    // One byte of the bundle's signed length, inside the signed object.
    let needle = b"\"length\": 1572864";
    let at = good
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
        - 1;
    let mut bad = good.clone();
    bad[at] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let (outcome, text) = it.run("a", &[("kiosk-1.bundle", &rel.join("kiosk-1.bundle"))], &[]);
    assert_eq!(outcome, Outcome::Refused, "{text}");
    assert!(text.contains("LengthOrHashMismatchError"), "{text}");
    // flipside refuses it too.
    let err = it.f.open().verify(Utc::now()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    // Restored, it is accepted; a flipped byte in the bundle itself is refused at download.
    std::fs::write(&path, &good).unwrap();
    let bundle = std::fs::read(rel.join("kiosk-1.bundle")).unwrap();
    let served =
        it.f.repo
            .join("targets")
            .join(format!("{}.kiosk-1.bundle", sha256_hex(&bundle)));
    let mut flipped = bundle.clone();
    flipped[bundle.len() / 2] ^= 0x01;
    std::fs::write(&served, &flipped).unwrap();
    let (outcome, text) = it.run("b", &[("kiosk-1.bundle", &rel.join("kiosk-1.bundle"))], &[]);
    assert_eq!(outcome, Outcome::Refused, "{text}");
    assert!(
        text.contains("refreshed: ") && text.contains("LengthOrHashMismatchError"),
        "{text}"
    );
    std::fs::write(&served, &bundle).unwrap();
    let (outcome, text) = it.run("c", &[("kiosk-1.bundle", &rel.join("kiosk-1.bundle"))], &[]);
    assert_eq!(outcome, Outcome::Ok, "{text}");
}

#[test]
fn python_client_reads_the_previous_repository_after_a_failed_publish() {
    let it = Interop::new();
    let rel1 = it.f.tmp.path().join("releases/1");
    let bundle2 = content("bundle 2", 1000);
    let rel2 = it.f.release(2, &bundle2, b"index 2");
    let before = listing(&it.f.repo);
    // Fail after the targets files and the targets metadata are out (before snapshot).
    let mut repo = it.f.open();
    let mut calls = 0;
    repo.set_fault_hook(Box::new(move |_| {
        calls += 1;
        if calls > 3 {
            Err(std::io::Error::other("injected failure"))
        } else {
            Ok(())
        }
    }));
    let err = repo.add(&it.f.keys, &rel2, Utc::now()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    drop(repo);
    assert_eq!(listing(&it.f.repo), before);
    let (outcome, text) = it.run(
        "after-failure",
        &[("kiosk-1.bundle", &rel1.join("kiosk-1.bundle"))],
        &["kiosk-2.bundle"],
    );
    assert_eq!(outcome, Outcome::Ok, "{text}");
}
