//! Files that appear under their final name only when complete: a temporary file in the same
//! directory, fsynced, renamed over the target, then the directory fsynced. On any error before
//! [`AtomicFile::commit`] the temporary file is removed when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::Error;

pub(crate) struct AtomicFile {
    temp: NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// A hidden temporary file beside `path` (same file system, so the rename is atomic).
    pub(crate) fn create(path: &Path) -> Result<Self, Error> {
        let name = path
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(parent(path))
            .map_err(|source| Error::CreateOutput {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AtomicFile {
            temp,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the content durable, then gives it the final name.
    pub(crate) fn commit(self) -> Result<(), Error> {
        let path = self.path;
        self.temp
            .as_file()
            .sync_all()
            .map_err(|source| Error::WriteOutput {
                path: path.clone(),
                source,
            })?;
        self.temp.persist(&path).map_err(|e| Error::Persist {
            path: path.clone(),
            source: e.error,
        })?;
        File::open(parent(&path))
            .and_then(|dir| dir.sync_all())
            .map_err(|source| Error::Persist { path, source })
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
