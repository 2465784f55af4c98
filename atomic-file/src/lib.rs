//! Files that appear under their final name only when complete and durable: a temporary file in
//! the same directory, fsync, rename over the final name, fsync of the directory.
//!
//! The temporary file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` under an unpredictable
//! name (`.tmp-<random>-<name>`): a file or a symbolic link planted at a temporary-looking name
//! is never opened, let alone written through. Until [`AtomicFile::commit`] renames it, the
//! temporary file is removed when dropped, so a failed write leaves the old file as it was and
//! nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Prefix of every temporary file: hidden, and never a name flipside gives a finished file.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Names tried before giving up: a collision of 64 random bits means someone plants names.
const ATTEMPTS: usize = 16;

/// The step of an atomic write that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Creating the temporary file.
    Create,
    /// Writing the content.
    Write,
    /// `fsync` of the temporary file.
    Sync,
    /// Renaming it over the final name.
    Rename,
    /// `fsync` of the directory.
    SyncDir,
}

impl Step {
    /// What the step does, as a verb phrase followed by the path ("cannot {action} {path}").
    pub const fn action(self) -> &'static str {
        match self {
            Step::Create => "create a temporary file for",
            Step::Write => "write",
            Step::Sync => "fsync",
            Step::Rename => "rename into place",
            Step::SyncDir => "fsync the directory of",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.action())
    }
}

/// An atomic write that failed: the old file (if any) is intact and no temporary file is left.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {}: {source}", path.display())]
pub struct Error {
    pub step: Step,
    /// The final path (or the directory, for [`Step::SyncDir`] from [`sync_dir`]).
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl From<Error> for io::Error {
    /// Keeps the kind, for callers that carry I/O errors.
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the file is created.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Permission bits of the new file (less the umask). Default 0o644.
    pub mode: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { mode: 0o644 }
    }
}

impl Options {
    pub fn mode(mode: u32) -> Options {
        Options { mode }
    }
}

/// Writes `bytes` to `path` atomically and durably (mode 0644 less the umask).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, bytes, Options::default())
}

/// [`write`] with [`Options`].
pub fn write_with(path: &Path, bytes: &[u8], options: Options) -> Result<()> {
    let mut file = AtomicFile::create_with(path, options)?;
    file.write_all(bytes)
        .map_err(|e| file.error(Step::Write, e))?;
    file.commit()
}

/// `fsync` of a directory, so that a rename or removal in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error {
            step: Step::SyncDir,
            path: dir.to_path_buf(),
            source,
        })
}

/// [`sync_dir`] of the directory holding `path`.
pub fn sync_parent(path: &Path) -> Result<()> {
    sync_dir(parent(path))
}

/// A file being written; it takes its final name in [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    /// Whether the temporary file is still ours to remove (until the rename).
    temporary: bool,
    path: PathBuf,
}

impl AtomicFile {
    /// A new temporary file beside `path` (mode 0644 less the umask).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        AtomicFile::create_with(path, Options::default())
    }

    /// [`AtomicFile::create`] with [`Options`].
    pub fn create_with(path: &Path, options: Options) -> Result<AtomicFile> {
        AtomicFile::create_named(path, options, std::iter::repeat_with(random))
    }

    /// The first of `suffixes` whose name is free; `O_EXCL | O_NOFOLLOW` refuses any existing
    /// entry, a symbolic link included.
    fn create_named(
        path: &Path,
        options: Options,
        suffixes: impl IntoIterator<Item = Result<u64, io::Error>>,
    ) -> Result<AtomicFile> {
        let err = |source| Error {
            step: Step::Create,
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .ok_or_else(|| err(io::Error::from(io::ErrorKind::InvalidInput)))?
            .to_string_lossy();
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for suffix in suffixes.into_iter().take(ATTEMPTS) {
            let temp =
                parent(path).join(format!("{TEMP_PREFIX}{:016x}-{name}", suffix.map_err(err)?));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(options.mode)
                .custom_flags(no_follow())
                .open(&temp);
            match opened {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        temp,
                        temporary: true,
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists || is_loop(&e) => last = e,
                Err(e) => return Err(err(e)),
            }
        }
        Err(err(last))
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary path (for messages).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Makes the content durable, gives it the final name, and makes the name durable.
    pub fn commit(mut self) -> Result<()> {
        // On an error, dropping `self` removes the temporary file.
        self.file
            .sync_all()
            .map_err(|e| self.error(Step::Sync, e))?;
        std::fs::rename(&self.temp, &self.path).map_err(|e| self.error(Step::Rename, e))?;
        self.temporary = false;
        sync_dir(parent(&self.path)).map_err(|e| Error {
            path: self.path.clone(),
            ..e
        })
    }

    fn error(&self, step: Step, source: io::Error) -> Error {
        Error {
            step,
            path: self.path.clone(),
            source,
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn random() -> Result<u64, io::Error> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

fn no_follow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// `ELOOP`: what `O_NOFOLLOW` answers for a symbolic link.
fn is_loop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

#[cfg(test)]
mod tests;
