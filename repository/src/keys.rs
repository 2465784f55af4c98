//! The keys directory: ed25519 private key files per role, checked against root before use.
//!
//! ```text
//! KEYS/root/<keyid>.json            offline: keep on removable media, bring for root changes
//! KEYS/targets/<keyid>.json         offline: needed by `repo add` and targets re-signing
//! KEYS/snapshot/<keyid>.json        online: every operation re-signs snapshot
//! KEYS/timestamp/<keyid>.json       online: `repo resign` renews timestamp (daily)
//! KEYS/retired/<role>/<keyid>.json  keys replaced by `repo rotate-key`, no longer trusted
//! ```
//!
//! Directories are created with mode 0700 and key files with 0600. An operation reads only the
//! directories of the roles it signs, so offline keys need to be present only when used.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use flipside_tuf::{Role, Root, SigningKey};

use crate::Error;

/// Name of the directory of retired keys.
pub const RETIRED_DIR: &str = "retired";

/// A keys directory.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

/// A loaded key and the file it came from.
#[derive(Debug)]
pub struct KeyFile {
    pub path: PathBuf,
    pub key: SigningKey,
}

impl KeyDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of a role's keys.
    pub fn role_dir(&self, role: Role) -> PathBuf {
        self.path.join(role.as_str())
    }

    /// Every `*.json` key file in a role's directory, sorted by path; none if it is missing.
    pub fn read_role(&self, role: Role) -> Result<Vec<KeyFile>, Error> {
        let dir = self.role_dir(role);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(Error::io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let key = SigningKey::load(&path).map_err(|source| Error::KeyFile { source })?;
                Ok(KeyFile { path, key })
            })
            .collect()
    }

    /// Saves a new key of `role` as `<role>/<keyid>.json`.
    pub fn save(&self, role: Role, key: &SigningKey) -> Result<PathBuf, Error> {
        let dir = self.role_dir(role);
        create_private_dir(&dir)?;
        let path = dir.join(format!("{}.json", key.key_id()));
        key.save(&path)
            .map_err(|source| Error::KeyFile { source })?;
        Ok(path)
    }

    /// Moves a replaced key file to `retired/<role>/`.
    pub fn retire(&self, role: Role, file: &Path) -> Result<PathBuf, Error> {
        let dir = self.path.join(RETIRED_DIR).join(role.as_str());
        create_private_dir(&dir)?;
        let name = file.file_name().unwrap_or(file.as_os_str());
        let to = dir.join(name);
        std::fs::rename(file, &to).map_err(Error::io(file))?;
        Ok(to)
    }

    /// The keys of `role` that root authorises, refusing stray or misplaced key files and
    /// requiring at least the role's threshold of them.
    pub fn signers(&self, root: &Root, role: Role) -> Result<Vec<SigningKey>, Error> {
        let threshold = role_threshold(root, role)?;
        let mut keys = Vec::new();
        for KeyFile { path, key } in self.read_role(role)? {
            check_key_role(root, role, &path, &key)?;
            keys.push(key);
        }
        if (keys.len() as u64) < threshold {
            return Err(Error::NotEnoughKeys {
                role,
                threshold,
                found: keys.len(),
                dir: self.role_dir(role),
            });
        }
        Ok(keys)
    }
}

/// The threshold of a role in a root that was verified (so the role exists).
pub(crate) fn role_threshold(root: &Root, role: Role) -> Result<u64, Error> {
    root.role_keys(role)
        .map(|k| k.threshold)
        .map_err(|source| Error::Produce { role, source })
}

/// Refuses a key that root lists for another role, or for none.
fn check_key_role(root: &Root, dir_role: Role, path: &Path, key: &SigningKey) -> Result<(), Error> {
    let listed = |role: Role| {
        root.role_keys(role)
            .is_ok_and(|k| k.keyids.contains(key.key_id()))
    };
    if listed(dir_role) {
        return Ok(());
    }
    match Role::ALL.into_iter().find(|r| listed(*r)) {
        Some(key_role) => Err(Error::WrongRoleKey {
            path: path.to_path_buf(),
            dir_role,
            key_role,
            key_id: key.key_id().clone(),
        }),
        None => Err(Error::KeyNotInRoot {
            path: path.to_path_buf(),
            role: dir_role,
            key_id: key.key_id().clone(),
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir))
}
