//! The device's trusted metadata: one directory with the files of the last successful refresh
//! under non-versioned names, and the last trusted time.
//!
//! ```text
//! DIR/root.json        the newest trusted root (first the pinned root given to `init`)
//! DIR/timestamp.json   \
//! DIR/snapshot.json     } verified together by the last successful refresh
//! DIR/targets.json     /
//! DIR/ROLE.json        delegated roles verified by a target search
//! DIR/last-trusted-time  {"last_trusted_time": RFC 3339}: see `secure_time`
//! ```
//!
//! Every `*.json` file here is TUF metadata (tools and test suites read them all as such), so
//! the last trusted time has a name without `.json`. Stores written before kept it in
//! `time.json`: it is still read when the new file is absent, and removed once the time is
//! next recorded.
//!
//! Every write is atomic: a temporary file in the same directory, fsync, rename, fsync of the
//! directory; a crash leaves the old file or the new one, never a mix. Only the client writes
//! metadata here, and only after verifying it.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::client::{secure_time, Error, Result};
use crate::metadata::{Metadata, Role, Root};
use crate::verify::verify_role;

/// Name of the file holding the last trusted time: not `*.json`, which is metadata only.
pub const TIME_FILE: &str = "last-trusted-time";

/// Where stores written before kept the last trusted time; read when [`TIME_FILE`] is absent.
const LEGACY_TIME_FILE: &str = "time.json";

/// A metadata store directory.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    dir: PathBuf,
}

impl MetadataStore {
    /// Opens a store that holds a trusted root.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let store = MetadataStore { dir: dir.into() };
        if !store.path(Role::Root).is_file() {
            return Err(Error::NotInitialised { dir: store.dir });
        }
        Ok(store)
    }

    /// Creates the store (and its directory) with `root` as the trusted root, which must be
    /// root metadata signed by a threshold of its own root keys (its expiry does not matter:
    /// the first refresh updates it, 5.2). Refuses a store that already has a root.
    pub fn init(dir: impl Into<PathBuf>, root: &[u8]) -> Result<Self> {
        let store = MetadataStore { dir: dir.into() };
        check_root(&store.path(Role::Root), root)?;
        std::fs::create_dir_all(&store.dir).map_err(|source| Error::StoreIo {
            path: store.dir.clone(),
            source,
        })?;
        if store.path(Role::Root).exists() {
            return Err(Error::AlreadyInitialised { dir: store.dir });
        }
        store.write(Role::Root, root)?;
        Ok(store)
    }

    /// Opens the store, initialising it with `pinned_root` when it has no root yet (first
    /// boot). An existing root is kept even if newer: it was reached by a verified chain.
    pub fn open_or_init(dir: impl Into<PathBuf>, pinned_root: &[u8]) -> Result<Self> {
        let dir = dir.into();
        match Self::open(&dir) {
            Err(Error::NotInitialised { .. }) => Self::init(dir, pinned_root),
            other => other,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the trusted file of `role` is kept.
    pub fn path(&self, role: Role) -> PathBuf {
        self.dir.join(file_name(role))
    }

    /// The trusted file of `role`, if the store has one.
    pub fn read(&self, role: Role) -> Result<Option<Vec<u8>>> {
        read_optional(&self.path(role))
    }

    /// Replaces the trusted file of `role` atomically (verified bytes only).
    pub(crate) fn write(&self, role: Role, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir, &file_name(role), bytes).map_err(|source| Error::StoreIo {
            path: self.path(role),
            source,
        })
    }

    /// Deletes the trusted file of `role` (fast-forward recovery, 5.3.11), durably.
    pub(crate) fn remove(&self, role: Role) -> Result<()> {
        self.remove_file(&file_name(role))
    }

    /// Deletes file `name` of the store if it exists, durably.
    fn remove_file(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        let io = |source| Error::StoreIo {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => flipside_atomic_file::sync_dir(&self.dir).map_err(|e| io(e.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    /// Where the trusted metadata of a delegated role is kept: `DIR/{stem}.json`, `stem`
    /// from [`crate::delegation::role_file_stem`]. `None` for a stem that would collide with
    /// the store's own files (top-level names are refused when metadata is parsed; `time`,
    /// the `time.json` of older stores, is not, and is simply not cached) or that is not one
    /// plain file name. A stem may start with a dot (`..%2Frole` for the role `../role`).
    pub fn delegated_path(&self, stem: &str) -> Option<PathBuf> {
        let name = format!("{stem}.json");
        let reserved = name == LEGACY_TIME_FILE
            || Role::ALL.iter().any(|r| file_name(*r) == name)
            || stem.is_empty()
            || stem.contains(['/', '\0'])
            || stem.bytes().all(|b| b == b'.');
        (!reserved).then(|| self.dir.join(name))
    }

    /// The trusted file of a delegated role, if the store has one.
    pub fn read_delegated(&self, stem: &str) -> Result<Option<Vec<u8>>> {
        match self.delegated_path(stem) {
            Some(path) => read_optional(&path),
            None => Ok(None),
        }
    }

    /// Replaces the trusted file of a delegated role atomically (verified bytes only).
    pub(crate) fn write_delegated(&self, stem: &str, bytes: &[u8]) -> Result<()> {
        let Some(path) = self.delegated_path(stem) else {
            return Ok(());
        };
        write_atomic(&self.dir, &format!("{stem}.json"), bytes)
            .map_err(|source| Error::StoreIo { path, source })
    }

    /// The last trusted time (see [`secure_time`]), if one was recorded.
    pub fn last_trusted_time(&self) -> Result<Option<DateTime<Utc>>> {
        for name in [TIME_FILE, LEGACY_TIME_FILE] {
            let path = self.dir.join(name);
            if let Some(bytes) = read_optional(&path)? {
                return secure_time::decode(&bytes)
                    .map(Some)
                    .map_err(|why| Error::TimeFile { path, why });
            }
        }
        Ok(None)
    }

    /// Raises the last trusted time to `time` if it is later; returns the time now recorded.
    /// Never lowers it. Besides the client after each successful refresh, the image builder
    /// may call this with the build time, a local clock value it trusts.
    pub fn raise_trusted_time(&self, time: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let last = self.last_trusted_time()?;
        let time = secure_time::reference_time(time, last);
        let recorded = read_optional(&self.dir.join(TIME_FILE))?
            .and_then(|bytes| secure_time::decode(&bytes).ok());
        if recorded != Some(time) {
            write_atomic(&self.dir, TIME_FILE, &secure_time::encode(time)).map_err(|source| {
                Error::StoreIo {
                    path: self.dir.join(TIME_FILE),
                    source,
                }
            })?;
        }
        self.remove_file(LEGACY_TIME_FILE)?;
        Ok(time)
    }
}

fn file_name(role: Role) -> String {
    format!("{role}.json")
}

/// Parses `bytes` as root metadata signed by a threshold of its own root keys.
fn check_root(path: &Path, bytes: &[u8]) -> Result<()> {
    let root = Metadata::<Root>::from_slice(bytes).and_then(|root| {
        verify_role(&root.signed, &root)?;
        Ok(root)
    });
    root.map(|_| ()).map_err(|source| Error::TrustedRoot {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::StoreIo {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Temporary file in `dir` (unpredictable name, never through a link), fsync, rename over
/// `name`, fsync `dir`: `flipside-atomic-file`.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    Ok(flipside_atomic_file::write(&dir.join(name), bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(store.read(Role::Timestamp).unwrap(), None);
        store.write(Role::Timestamp, b"one").unwrap();
        store.write(Role::Timestamp, b"two").unwrap();
        assert_eq!(store.read(Role::Timestamp).unwrap().unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["timestamp.json"]);
        store.remove(Role::Timestamp).unwrap();
        store.remove(Role::Timestamp).unwrap();
        assert_eq!(store.read(Role::Timestamp).unwrap(), None);
    }

    #[test]
    fn links_planted_at_the_old_temporary_names_are_not_written_through() {
        // The old names were `.tmp-<name>.<pid>`: a link planted for every likely pid had its
        // target overwritten by the next refresh.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let store_dir = dir.path().join("metadata");
        std::fs::create_dir(&store_dir).unwrap();
        let pid = std::process::id();
        std::os::unix::fs::symlink(
            &victim,
            store_dir.join(format!(".tmp-timestamp.json.{pid}")),
        )
        .unwrap();
        let store = MetadataStore { dir: store_dir };
        store.write(Role::Timestamp, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(store.read(Role::Timestamp).unwrap().unwrap(), b"new");
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore {
            dir: dir.path().to_path_buf(),
        };
        store.write(Role::Snapshot, b"old").unwrap();
        // A directory in the way of the rename makes the write fail after the temporary.
        std::fs::create_dir(dir.path().join("targets.json")).unwrap();
        std::fs::write(dir.path().join("targets.json/x"), b"").unwrap();
        let err = store.write(Role::Targets, b"new").unwrap_err();
        assert!(matches!(err, Error::StoreIo { .. }), "{err}");
        assert_eq!(store.read(Role::Snapshot).unwrap().unwrap(), b"old");
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(".tmp-")
            })
            .count();
        assert_eq!(temps, 0);
    }

    #[test]
    fn trusted_time_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(store.last_trusted_time().unwrap(), None);
        let (a, b) = (t("2025-01-01T00:00:00Z"), t("2025-02-01T00:00:00Z"));
        assert_eq!(store.raise_trusted_time(b).unwrap(), b);
        assert_eq!(store.raise_trusted_time(a).unwrap(), b);
        assert_eq!(store.last_trusted_time().unwrap(), Some(b));
        std::fs::write(dir.path().join(TIME_FILE), b"garbage").unwrap();
        let err = store.last_trusted_time().unwrap_err();
        assert!(matches!(err, Error::TimeFile { .. }), "{err}");
    }

    #[test]
    fn trusted_time_is_not_a_json_file_and_a_legacy_one_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore {
            dir: dir.path().to_path_buf(),
        };
        let (a, b) = (t("2025-01-01T00:00:00Z"), t("2025-02-01T00:00:00Z"));
        std::fs::write(dir.path().join(LEGACY_TIME_FILE), secure_time::encode(b)).unwrap();
        assert_eq!(
            store.last_trusted_time().unwrap(),
            Some(b),
            "legacy file read"
        );
        assert_eq!(store.raise_trusted_time(a).unwrap(), b, "legacy time kept");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [TIME_FILE]);
        assert!(!TIME_FILE.ends_with(".json"));
        assert_eq!(store.last_trusted_time().unwrap(), Some(b));
    }

    #[test]
    fn delegated_roles_are_plain_files_beside_the_top_level_ones() {
        let store = MetadataStore {
            dir: PathBuf::from("/s"),
        };
        let stem = crate::delegation::role_file_stem;
        for role in ["a", "../delegatedrole", "/r", "?", "#", ".x"] {
            let path = store.delegated_path(&stem(role)).unwrap();
            assert_eq!(path.parent(), Some(Path::new("/s")), "{role:?}");
        }
        for stem in ["", ".", "..", "time", "root", "a/b", "a\0"] {
            assert_eq!(store.delegated_path(stem), None, "{stem:?}");
        }
    }

    #[test]
    fn init_refuses_garbage_and_an_existing_root() {
        let dir = tempfile::tempdir().unwrap();
        let err = MetadataStore::init(dir.path().join("s"), b"{}").unwrap_err();
        assert!(matches!(err, Error::TrustedRoot { .. }), "{err}");
        assert!(!dir.path().join("s").exists());
        let err = MetadataStore::open(dir.path().join("s")).unwrap_err();
        assert!(matches!(err, Error::NotInitialised { .. }), "{err}");
    }
}
