//! One publisher at a time: an exclusive flock(2) on `REPO/.flipside-repository.lock`, held
//! for the whole operation and released when the process ends, however it ends.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

use crate::layout::LOCK_FILE;
use crate::Error;

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// How long to wait for the lock. Another publisher is refused after this; the wait also
/// covers a forked child that briefly holds a copy of the descriptor until its exec closes it
/// (the lock belongs to the open file, so a `Command` spawned by any thread of this process
/// between our open and drop keeps it for a moment).
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_POLL: Duration = Duration::from_millis(20);

/// Takes the lock of the repository in `repo`, waiting at most [`LOCK_WAIT`].
pub(crate) fn lock(repo: &Path) -> Result<Lock, Error> {
    let path = repo.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_POLL)
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Locked { path }),
            Err(e) => {
                return Err(Error::Io {
                    path,
                    source: e.into(),
                })
            }
        }
    }
}
