//! One publisher at a time: an exclusive flock(2) on `REPO/.flipside-repository.lock`, held
//! for the whole operation and released when the process ends, however it ends.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::layout::LOCK_FILE;
use crate::Error;

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Takes the lock of the repository in `repo` without waiting.
pub(crate) fn lock(repo: &Path) -> Result<Lock, Error> {
    let path = repo.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Lock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked { path }),
        Err(e) => Err(Error::Io {
            path,
            source: e.into(),
        }),
    }
}
