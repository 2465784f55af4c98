//! Output files that appear under their final name only when complete, through
//! `flipside-atomic-file`; this module only maps its failures to this crate's errors.

use std::fs::File;
use std::path::Path;

use flipside_atomic_file::Step;

use crate::Error;

pub(crate) struct AtomicFile(flipside_atomic_file::AtomicFile);

impl AtomicFile {
    /// A hidden temporary file beside `path` (same file system, so the rename is atomic).
    pub(crate) fn create(path: &Path) -> Result<Self, Error> {
        flipside_atomic_file::AtomicFile::create(path)
            .map(AtomicFile)
            .map_err(to_error)
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.0.file()
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    /// Makes the content durable, then gives it the final name.
    pub(crate) fn commit(self) -> Result<(), Error> {
        self.0.commit().map_err(to_error)
    }
}

fn to_error(e: flipside_atomic_file::Error) -> Error {
    let (path, source) = (e.path, e.source);
    match e.step {
        Step::Create => Error::CreateOutput { path, source },
        Step::Write | Step::Sync => Error::WriteOutput { path, source },
        Step::Rename | Step::SyncDir => Error::Persist { path, source },
    }
}
