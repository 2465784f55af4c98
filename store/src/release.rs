//! Reading the closure an image was built from out of its `release.json`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use flipside_contract::release::{ClosureEntry, Release};

use crate::{Error, Result};

/// File name of the release description in an image output directory.
pub const RELEASE_FILE: &str = "release.json";

/// Reads and validates a release description: `path` is the file or the output directory of
/// `flipside-build image` holding it.
pub fn read_release(path: &Path) -> Result<Release> {
    let file: PathBuf = if path.is_dir() {
        path.join(RELEASE_FILE)
    } else {
        path.to_path_buf()
    };
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::ReleaseNotFound { path: file })
        }
        Err(e) => {
            return Err(Error::ReadSource {
                path: file,
                source: e,
            })
        }
    };
    let release: Release = serde_json::from_str(&text).map_err(|e| Error::ParseRelease {
        path: file.clone(),
        source: e,
    })?;
    release.validate().map_err(|e| Error::InvalidRelease {
        path: file,
        source: e,
    })?;
    Ok(release)
}

/// The closure recorded in a release description (see [`read_release`]).
pub fn read_release_closure(path: &Path) -> Result<Vec<ClosureEntry>> {
    Ok(read_release(path)?.closure)
}
