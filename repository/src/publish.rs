//! Atomic publishing: every file is written to a temporary file in its directory, fsynced,
//! renamed into place, and the directory fsynced. Files go out in the order that keeps the
//! repository servable (targets, then metadata, `timestamp.json` last); if a step fails, the
//! steps already done are undone in reverse (new files removed, replaced files restored), so
//! the previous repository stays intact.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::TEMP_PREFIX;
use crate::Error;

/// Called with the destination before each publishing step; an error makes the step fail.
/// Tests inject failures with it.
pub type FaultHook = Box<dyn FnMut(&Path) -> std::io::Result<()> + Send>;

/// One publishing step.
#[derive(Debug)]
pub(crate) enum Step {
    /// Move a staged file (a target copied and checked earlier) into place.
    Rename { from: PathBuf, to: PathBuf },
    /// Write a file with this content, replacing any file of that name.
    Write { path: PathBuf, bytes: Vec<u8> },
}

enum Undo {
    Remove(PathBuf),
    Restore(PathBuf, Vec<u8>),
}

/// Runs the steps in order; on failure undoes what was done and removes staged files.
pub(crate) fn publish(steps: Vec<Step>, fault: &mut Option<FaultHook>) -> Result<(), Error> {
    let mut undo: Vec<Undo> = Vec::new();
    let mut result = Ok(());
    for step in &steps {
        result = run_step(step, fault, &mut undo);
        if result.is_err() {
            break;
        }
    }
    let Err(original) = result else {
        return Ok(());
    };
    for step in &steps {
        if let Step::Rename { from, .. } = step {
            let _ = std::fs::remove_file(from);
        }
    }
    for action in undo.into_iter().rev() {
        let (path, done) = match action {
            Undo::Remove(path) => {
                let done = std::fs::remove_file(&path).and_then(|()| sync_parent(&path));
                (path, done)
            }
            Undo::Restore(path, bytes) => {
                let done = write_atomic(&path, &bytes);
                (path, done)
            }
        };
        if let Err(source) = done {
            return Err(Error::RollbackFailed {
                path,
                source,
                original: Box::new(original),
            });
        }
    }
    Err(original)
}

fn run_step(step: &Step, fault: &mut Option<FaultHook>, undo: &mut Vec<Undo>) -> Result<(), Error> {
    match step {
        Step::Rename { from, to } => {
            if let Some(hook) = fault {
                hook(to).map_err(Error::io(to))?;
            }
            std::fs::rename(from, to).map_err(Error::io(to))?;
            undo.push(Undo::Remove(to.clone()));
            sync_parent(to).map_err(Error::io(to))
        }
        Step::Write { path, bytes } => {
            if let Some(hook) = fault {
                hook(path).map_err(Error::io(path))?;
            }
            let previous = match std::fs::read(path) {
                Ok(old) => Undo::Restore(path.clone(), old),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Undo::Remove(path.clone()),
                Err(source) => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source,
                    })
                }
            };
            // Registered before the write: a rename that happened before a failed directory
            // fsync must be undone too (and undoing a write that did not happen is harmless).
            undo.push(previous);
            write_atomic(path, bytes).map_err(Error::io(path))
        }
    }
}

/// A temporary path next to `path`, unique within this process.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{n}-{name}", std::process::id()))
}

/// Creates a new world-readable file (served over HTTP) that nothing else writes.
pub(crate) fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

/// Writes `bytes` to `path` atomically (world-readable: served over HTTP):
/// `flipside-atomic-file`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    Ok(flipside_atomic_file::write(path, bytes)?)
}

/// fsync of the directory holding `path`, so that a rename survives a power cut.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    Ok(flipside_atomic_file::sync_parent(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn steps(dir: &Path) -> Vec<Step> {
        let staged = dir.join(".tmp-staged");
        std::fs::write(&staged, b"target").unwrap();
        vec![
            Step::Rename {
                from: staged,
                to: dir.join("t"),
            },
            Step::Write {
                path: dir.join("new"),
                bytes: b"new".to_vec(),
            },
            Step::Write {
                path: dir.join("existing"),
                bytes: b"replaced".to_vec(),
            },
        ]
    }

    #[test]
    fn every_failure_point_leaves_the_directory_as_it_was() {
        for fail_at in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("existing"), b"old").unwrap();
            let before = listing(dir.path());
            let steps = steps(dir.path());
            let mut calls = 0;
            let mut hook: Option<FaultHook> = Some(Box::new(move |_| {
                calls += 1;
                if calls > fail_at {
                    Err(std::io::Error::other("injected"))
                } else {
                    Ok(())
                }
            }));
            let err = publish(steps, &mut hook).unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert_eq!(listing(dir.path()), before, "failure at step {fail_at}");
        }
    }

    #[test]
    fn success_publishes_everything_with_readable_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("existing"), b"old").unwrap();
        publish(steps(dir.path()), &mut None).unwrap();
        let names: Vec<_> = listing(dir.path())
            .into_iter()
            .map(|(n, b)| (n, String::from_utf8(b).unwrap()))
            .collect();
        assert_eq!(
            names,
            [("existing", "replaced"), ("new", "new"), ("t", "target")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let mode = std::fs::metadata(dir.path().join("new"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o044,
            0o044,
            "metadata must be readable by a web server"
        );
    }
}
