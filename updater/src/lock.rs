//! One state-changing command at a time. `install`, `health`, `mark-good`, `mark-bad` and
//! `rollback` each hold an exclusive `flock` on `STATE_DIR/lock` for their whole run: without it,
//! two installs read the table once each and write their own copy back later, and a slot armed
//! by one can be overwritten by the other. A second command refuses at once (exit 12) and names
//! the holder; the kernel drops the lock when the holder exits, however it exits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file in the state directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct UpdateLock {
    _file: File,
}

impl UpdateLock {
    /// Takes the lock of `state_dir` (created if missing), or fails with [`Error::Busy`].
    pub fn acquire(state_dir: &Path) -> Result<UpdateLock> {
        let path = state_dir.join(LOCK_FILE);
        let io = |op: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| Error::StateIo { op, path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io("create", &state_dir.to_path_buf()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(io("open the lock", &path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::Busy {
                    lock: path,
                    holder: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io("lock", &path)(e.into())),
        }
        // Who holds it, for the message a second command prints.
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .map_err(io("write the lock", &path))?;
        Ok(UpdateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("state");
        let first = UpdateLock::acquire(&dir).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        match UpdateLock::acquire(&dir) {
            Err(Error::Busy { holder, lock }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(lock, dir.join(LOCK_FILE));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        UpdateLock::acquire(&dir).unwrap();
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, t.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(
            UpdateLock::acquire(t.path()),
            Err(Error::StateIo { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
