//! How the client reaches a repository: a small trait over "open this relative path", with a
//! filesystem implementation (a local repository directory, a USB stick, the tests). The
//! HTTP transport lives with the updater.
//!
//! Transports need not enforce lengths: the client reads at most `max_len` bytes (plus one, to
//! notice more) from whatever they return, and checks digests itself.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::client::{Error, Result};

/// A repository reachable by relative paths such as `metadata/3.root.json` or
/// `targets/<sha256>.kiosk-8.bundle`.
pub trait Transport {
    /// Opens the file at `path` (relative to the repository base, `/`-separated, checked with
    /// [`check_path`]). `max_len` is the most the client will read: a transport may refuse a
    /// file it knows to be longer, but the client enforces the cap anyway. A file that does
    /// not exist is [`TransportError::NotFound`]; the root-chain walk depends on it.
    fn fetch(&self, path: &str, max_len: u64) -> Result<Box<dyn Read + '_>, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Box<dyn Read + '_>, TransportError> {
        (**self).fetch(path, max_len)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Box<dyn Read + '_>, TransportError> {
        (**self).fetch(path, max_len)
    }
}

/// Why a transport could not open a file.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The repository has no such file (HTTP 404 or 410, a missing local file).
    #[error("{path} does not exist in the repository")]
    NotFound { path: String },
    /// Anything else: I/O, network, a server error, a path that is not a safe relative path.
    #[error("{path}: {source}")]
    Failed {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TransportError {
    /// A failure with an I/O cause.
    pub fn io(path: &str, source: io::Error) -> Self {
        TransportError::Failed {
            path: path.to_string(),
            source: Box::new(source),
        }
    }
}

/// Checks that `path` is a relative `/`-separated path with no empty, `.` or `..` component,
/// no backslash and no NUL, so that no transport can be led outside the repository.
pub fn check_path(path: &str) -> Result<(), TransportError> {
    let bad = path.is_empty()
        || path.contains(['\\', '\0'])
        || path
            .split('/')
            .any(|c| c.is_empty() || crate::client::target::is_dot_segment(c));
    if bad {
        return Err(TransportError::Failed {
            path: path.to_string(),
            source: "not a safe relative path inside the repository".into(),
        });
    }
    Ok(())
}

/// A repository in a local directory (the directory holding `metadata/` and `targets/`).
#[derive(Debug, Clone)]
pub struct FsTransport {
    base: PathBuf,
}

impl FsTransport {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        FsTransport { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Transport for FsTransport {
    fn fetch(&self, path: &str, _max_len: u64) -> Result<Box<dyn Read + '_>, TransportError> {
        check_path(path)?;
        match open_regular(&self.base.join(path)) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TransportError::NotFound {
                path: path.to_string(),
            }),
            Err(e) => Err(TransportError::io(path, e)),
        }
    }
}

/// Opens a file of a local repository (a directory, a USB stick) for reading, refusing what
/// is not a regular file before any read: a FIFO would block the open or the read forever,
/// a directory fails only at the first read, and a symbolic link as the last component
/// could point anywhere. The open does not block and does not follow a link; `fstat` then
/// checks the file type.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = (OFlags::NONBLOCK | OFlags::NOFOLLOW).bits();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Fetches a whole file of at most `max_len` bytes; `None` when the repository does not have
/// it. Reads one byte more than allowed, never more, to tell "exactly at the cap" from "over".
pub(crate) fn fetch_capped(
    transport: &dyn Transport,
    path: &str,
    max_len: u64,
    what: &str,
) -> Result<Option<Vec<u8>>> {
    let reader = match transport.fetch(path, max_len) {
        Ok(reader) => reader,
        Err(TransportError::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(Error::Fetch {
                what: what.to_string(),
                path: path.to_string(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    reader
        .take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Fetch {
            what: what.to_string(),
            path: path.to_string(),
            source: TransportError::io(path, e),
        })?;
    if bytes.len() as u64 > max_len {
        return Err(Error::TooLarge {
            what: what.to_string(),
            path: path.to_string(),
            limit: max_len,
        });
    }
    Ok(Some(bytes))
}

/// [`fetch_capped`] for a file the signed metadata requires: absent is an error.
pub(crate) fn fetch_required(
    transport: &dyn Transport,
    path: &str,
    max_len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    fetch_capped(transport, path, max_len, what)?.ok_or_else(|| Error::Missing {
        what: what.to_string(),
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_repository() {
        for good in ["metadata/1.root.json", "targets/ab.kiosk-1.bundle", "a/b/c"] {
            check_path(good).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "metadata/../../x",
            "metadata//x",
            "./x",
            "x/",
            "a\\b",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fs_transport_found_missing_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("metadata")).unwrap();
        std::fs::write(dir.path().join("metadata/x.json"), b"12345").unwrap();
        let t = FsTransport::new(dir.path());
        let got = fetch_capped(&t, "metadata/x.json", 5, "x").unwrap();
        assert_eq!(got.as_deref(), Some(&b"12345"[..]));
        let err = fetch_capped(&t, "metadata/x.json", 4, "x").unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 4, .. }), "{err}");
        assert!(fetch_capped(&t, "metadata/y.json", 5, "y")
            .unwrap()
            .is_none());
        let err = fetch_required(&t, "metadata/y.json", 5, "y").unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        let err = fetch_capped(&t, "metadata", 5, "dir").unwrap_err();
        assert!(matches!(err, Error::Fetch { .. }), "{err}");
        let err = fetch_capped(&t, "../x", 5, "outside").unwrap_err();
        assert!(matches!(err, Error::Fetch { .. }), "{err}");
    }

    #[test]
    fn fifos_and_links_are_refused_without_blocking() {
        use rustix::fs::{mknodat, FileType, Mode, CWD};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("metadata")).unwrap();
        // No writer ever opens it: a blocking open would never return.
        let fifo = dir.path().join("metadata/2.root.json");
        mknodat(CWD, &fifo, FileType::Fifo, Mode::from(0o644), 0).unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret"),
            dir.path().join("metadata/timestamp.json"),
        )
        .unwrap();
        let t = FsTransport::new(dir.path());
        for path in ["metadata/2.root.json", "metadata/timestamp.json"] {
            let err = fetch_capped(&t, path, 5, "x").unwrap_err();
            assert!(matches!(err, Error::Fetch { .. }), "{path}: {err}");
        }
        let err = open_regular(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            open_regular(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
