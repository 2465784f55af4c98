//! The keys directory: the signing keys of each role, checked against root before use: ed25519
//! private key files, and `.pkcs11` files naming a key in a PKCS#11 token by its URI
//! ([`crate::signer`]).
//!
//! ```text
//! KEYS/root/<keyid>.json            offline: keep on removable media, bring for root changes
//!                                   (or sign root changes elsewhere: `repo prepare`, `sign-detached`, `merge`)
//! KEYS/targets/<keyid>.json         offline: needed by `repo add` and targets re-signing
//! KEYS/snapshot/<keyid>.json        online: every operation re-signs snapshot
//! KEYS/timestamp/<keyid>.json       online: `repo resign` renews timestamp (daily)
//! KEYS/<role>/<name>.pkcs11         a key in a token: one line, `pkcs11:token=...;object=...?module-path=...`
//! KEYS/retired/<role>/<keyid>.json  keys replaced by `repo rotate-key` or `repo merge`, no longer trusted
//! ```
//!
//! Directories are created with mode 0700 and key files with 0600. An operation reads only the
//! directories of the roles it signs, so offline keys need to be present only when used.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use flipside_tuf::{Role, Root, Signer, SigningKey};

use crate::signer::{KeySpec, PKCS11_EXTENSION};
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

/// A signer of the keys directory (a key file or a token key) and the file that names it.
pub struct RoleSigner {
    pub path: PathBuf,
    pub signer: Box<dyn Signer>,
}

impl std::fmt::Debug for RoleSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSigner")
            .field("path", &self.path)
            .field("key_id", self.signer.key_id())
            .finish_non_exhaustive()
    }
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

    /// The files of a role's directory with extension `ext`, sorted; none if it is missing.
    fn role_files(&self, role: Role, ext: &str) -> Result<Vec<PathBuf>, Error> {
        let dir = self.role_dir(role);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(Error::io(&dir))?.path();
            if path.extension().is_some_and(|e| e == ext) && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Every `*.json` (ed25519) key file in a role's directory, sorted by path.
    pub fn read_role(&self, role: Role) -> Result<Vec<KeyFile>, Error> {
        self.role_files(role, "json")?
            .into_iter()
            .map(|path| {
                let key = SigningKey::load(&path).map_err(|source| Error::KeyFile { source })?;
                Ok(KeyFile { path, key })
            })
            .collect()
    }

    /// Every key of a role's directory: the `*.json` key files, then the `*.pkcs11` token
    /// keys (each logged in to).
    pub fn read_signers(&self, role: Role) -> Result<Vec<RoleSigner>, Error> {
        let mut signers: Vec<RoleSigner> = self
            .read_role(role)?
            .into_iter()
            .map(|f| RoleSigner {
                path: f.path,
                signer: Box::new(f.key),
            })
            .collect();
        for path in self.role_files(role, PKCS11_EXTENSION)? {
            let signer = KeySpec::pkcs11_file(&path)?.open()?;
            signers.push(RoleSigner { path, signer });
        }
        Ok(signers)
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
    pub fn signers(&self, root: &Root, role: Role) -> Result<Vec<Box<dyn Signer>>, Error> {
        let threshold = role_threshold(root, role)?;
        let mut keys = Vec::new();
        for RoleSigner { path, signer } in self.read_signers(role)? {
            check_key_role(root, role, &path, signer.as_ref())?;
            keys.push(signer);
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

/// The signers a new root keeps for a role, and the files of the keys it dropped.
pub type KeptAndRetired = (Vec<Box<dyn Signer>>, Vec<PathBuf>);

impl KeyDir {
    /// For publishing a `new` root that replaces `old`: the keys of `role` here that `new`
    /// lists, and the files of those only `old` listed for it (rotated out: retire them once
    /// the new root is published). A key neither lists is refused. No threshold is checked.
    pub fn signers_after(
        &self,
        old: &Root,
        new: &Root,
        role: Role,
    ) -> Result<KeptAndRetired, Error> {
        let lists = |root: &Root, key: &dyn Signer| {
            root.role_keys(role)
                .is_ok_and(|k| k.keyids.contains(key.key_id()))
        };
        let (mut keep, mut retire) = (Vec::new(), Vec::new());
        for RoleSigner { path, signer } in self.read_signers(role)? {
            if lists(new, signer.as_ref()) {
                keep.push(signer);
            } else if lists(old, signer.as_ref()) {
                retire.push(path);
            } else {
                check_key_role(new, role, &path, signer.as_ref())?;
            }
        }
        Ok((keep, retire))
    }

    /// Refuses fewer keys of `role` than `root`'s threshold.
    pub(crate) fn check_threshold(
        &self,
        root: &Root,
        role: Role,
        found: usize,
    ) -> Result<(), Error> {
        let threshold = role_threshold(root, role)?;
        if (found as u64) < threshold {
            return Err(Error::NotEnoughKeys {
                role,
                threshold,
                found,
                dir: self.role_dir(role),
            });
        }
        Ok(())
    }
}

/// The threshold of a role in a root that was verified (so the role exists).
pub(crate) fn role_threshold(root: &Root, role: Role) -> Result<u64, Error> {
    root.role_keys(role)
        .map(|k| k.threshold)
        .map_err(|source| Error::Produce { role, source })
}

/// Refuses a key that root lists for another role, or for none.
fn check_key_role(root: &Root, dir_role: Role, path: &Path, key: &dyn Signer) -> Result<(), Error> {
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

/// The signers as references, as signing takes them.
pub(crate) fn refs(keys: &[Box<dyn Signer>]) -> Vec<&dyn Signer> {
    keys.iter().map(|k| k.as_ref()).collect()
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir))
}
