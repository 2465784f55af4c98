//! Helpers shared by the repository tests: a clock, a repository with keys, release
//! directories, and directory listings to compare before and after.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use flipside_contract::release::{file_names, kernel_file_names, Release, UKI_FORMAT};
use flipside_repository::layout::LOCK_FILE;
use flipside_repository::{InitSettings, KeyDir, Repository};
use flipside_test_support::release::{
    image_info, kernel_part, release, write_file, write_release_json,
};

/// The fixed clock of the tests.
pub fn now() -> DateTime<Utc> {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

pub fn days(n: i64) -> DateTime<Utc> {
    now() + TimeDelta::days(n)
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub keys: KeyDir,
}

impl Fixture {
    /// An empty temporary directory with `repo/`, `keys/` and room for releases.
    pub fn empty() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let keys = KeyDir::new(tmp.path().join("keys"));
        Fixture { tmp, repo, keys }
    }

    /// A repository made by `init` with the default settings.
    pub fn new() -> Self {
        Self::with_settings(&InitSettings::default())
    }

    pub fn with_settings(settings: &InitSettings) -> Self {
        let f = Self::empty();
        Repository::create(&f.repo)
            .unwrap()
            .init(&f.keys, settings, now())
            .unwrap();
        f
    }

    pub fn open(&self) -> Repository {
        Repository::open(&self.repo).unwrap()
    }

    /// A release directory `releases/<version>` with the given bundle and index bytes.
    pub fn release(&self, version: u64, bundle: &[u8], index: &[u8]) -> PathBuf {
        let dir = self.tmp.path().join("releases").join(version.to_string());
        write_release(&dir, version, bundle, index);
        dir
    }
}

pub use flipside_test_support::sha256_hex;

/// Writes `release.json`, the bundle and the index of release `version` of `kiosk` into `dir`.
pub fn write_release(dir: &Path, version: u64, bundle: &[u8], index: &[u8]) -> Release {
    let (bundle_name, index_name) = file_names("kiosk", version);
    let bundle = write_file(dir, &bundle_name, bundle);
    let index = write_file(dir, &index_name, index);
    let image = image_info("squashfs", 4096, sha256_hex(b"image"));
    let release = Release {
        init: "/init".to_string(),
        ..release("kiosk", version, "qemu-x86_64", image, bundle, index)
    };
    write_release_json(dir, &release);
    release
}

impl Fixture {
    /// A release directory `releases/<version>` whose release has a kernel part.
    pub fn release_with_kernel(&self, version: u64, files: &PartFiles) -> PathBuf {
        let dir = self.tmp.path().join("releases").join(version.to_string());
        write_release_with_kernel(&dir, version, files);
        dir
    }
}

/// The bytes of the four files of a release with a kernel part.
pub struct PartFiles<'a> {
    pub bundle: &'a [u8],
    pub index: &'a [u8],
    pub kernel_bundle: &'a [u8],
    pub kernel_index: &'a [u8],
}

/// [`write_release`] plus a kernel part (`kiosk-<version>.kernel.bundle` and `.kernel.index`).
pub fn write_release_with_kernel(dir: &Path, version: u64, files: &PartFiles) -> Release {
    let mut release = write_release(dir, version, files.bundle, files.index);
    let (bundle_name, index_name) = kernel_file_names("kiosk", version);
    let bundle = write_file(dir, &bundle_name, files.kernel_bundle);
    let index = write_file(dir, &index_name, files.kernel_index);
    let uki = image_info(UKI_FORMAT, 11 << 20, sha256_hex(b"uki"));
    release.kernel = Some(kernel_part("6.1.0-57-amd64", uki, bundle, index));
    write_release_json(dir, &release);
    release
}

/// Every file under `dir` (recursively) with its content, the lock file left out.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != LOCK_FILE {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}
