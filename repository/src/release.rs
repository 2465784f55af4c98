//! Reading a release directory (`release.json` with its bundle and index) and staging its
//! files in `targets/`: each file is copied once while the copied bytes are hashed, so what is
//! published is exactly what was checked (no second read of the source).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flipside_contract::release::{FileInfo, Release};
use sha2::{Digest, Sha256};

use crate::publish::{create_new, temp_path};
use crate::Error;

/// Name of the release description in a release directory.
pub const RELEASE_FILE: &str = "release.json";

/// Reads and validates `DIR/release.json`.
pub fn read_release(dir: &Path) -> Result<Release, Error> {
    let path = dir.join(RELEASE_FILE);
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    let release: Release = serde_json::from_slice(&bytes).map_err(|source| Error::ReleaseJson {
        path: path.clone(),
        source,
    })?;
    release.validate().map_err(|source| Error::Release {
        path: path.clone(),
        source,
    })?;
    if release.bundle.name == release.index.name {
        return Err(Error::ReleaseMismatch {
            path,
            why: format!(
                "the bundle and the index are both named {}",
                release.bundle.name
            ),
        });
    }
    Ok(release)
}

/// A checked copy of a release file in `targets/` under a temporary name; removed when
/// dropped unless it was moved into place.
#[derive(Debug)]
pub(crate) struct Staged {
    pub temp: PathBuf,
    pub length: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After publishing the temporary name no longer exists; this only cleans up failures.
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Copies `DIR/<info.name>` to a temporary file in `targets_dir`, hashing the bytes as they
/// are written, and refuses it unless its length and sha256 equal `info`'s. Reads at most one
/// byte more than the expected length.
pub(crate) fn stage(dir: &Path, info: &FileInfo, targets_dir: &Path) -> Result<Staged, Error> {
    let source_path = dir.join(&info.name);
    let source = File::open(&source_path).map_err(Error::io(&source_path))?;
    let staged = Staged {
        temp: temp_path(&targets_dir.join(&info.name)),
        length: info.length,
    };
    let mut out = create_new(&staged.temp).map_err(Error::io(&staged.temp))?;
    let mut hasher = Sha256::new();
    let mut copied: u64 = 0;
    let mut limited = source.take(info.length.saturating_add(1));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = limited.read(&mut buf).map_err(Error::io(&source_path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(Error::io(&staged.temp))?;
        copied += n as u64;
    }
    let mismatch = |why| Error::ReleaseMismatch {
        path: source_path.clone(),
        why,
    };
    if copied != info.length {
        return Err(mismatch(if copied > info.length {
            format!(
                "it is longer than the {} bytes release.json gives",
                info.length
            )
        } else {
            format!(
                "it is {copied} bytes long, release.json gives {}",
                info.length
            )
        }));
    }
    let sha = hex::encode(hasher.finalize());
    if sha != info.sha256 {
        return Err(mismatch(format!(
            "its sha256 is {sha}, release.json gives {}",
            info.sha256
        )));
    }
    out.sync_all().map_err(Error::io(&staged.temp))?;
    Ok(staged)
}
