//! Walking a store path's file tree on the host: serialise it as a NAR into a digest (and a
//! reference scanner), enforce the store rules, and optionally copy it with normalised modes.
//!
//! Every byte that is hashed is the byte that is copied, read once: what the store records is
//! what it holds, even if the source changes during the walk.
//!
//! Symlinks are read, never followed (nor is a file opened through one): the NAR holds each
//! link's target bytes, so the content hash, and with it a built-in store path's name, changes
//! when any target changes; the copy recreates the same bytes. Which targets are allowed is
//! [`crate::path::classify_symlink`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{utimensat, AtFlags, OFlags, Timespec, Timestamps, CWD};
use sha2::{Digest, Sha256};

use crate::hash::format_sha256;
use crate::nar::NarEncoder;
use crate::path::{classify_symlink, LinkTarget};
use crate::scan::RefScanner;
use crate::{Error, Result};

const CHUNK: usize = 64 * 1024;

/// Access and modification time of materialised nodes: 1 s after the epoch, as in Nix.
const MATERIALIZED_TIME: i64 = 1;

/// The only mode bit a store path keeps: executable (owner) or not.
const EXECUTABLE: u32 = 0o100;

/// How copied files are laid down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMode {
    /// Into the built-in store: files 0444/0555, directories 0755 (so the owner can delete the
    /// store), each file and directory fsynced before the import is renamed into place.
    Store,
    /// Into an image's staging tree: files 0444/0555, directories 0555, times of every node
    /// (symlinks too) 1 s after the epoch, no fsync (the staging tree is rebuilt on failure).
    Materialize,
}

/// The store rules a tree is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// Logical store directory of the path (`/flipside/store`, `/nix/store`).
    pub store_dir: &'a str,
    /// `<hash>-<name>` of the path, if it has one yet.
    pub own: Option<&'a str>,
}

/// What a walk found out about a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeSummary {
    /// `sha256:<hex>` of the NAR.
    pub nar_hash: String,
    pub nar_size: u64,
    /// Store paths whose hash part occurs in the NAR (empty without a scanner).
    pub references: BTreeSet<String>,
    /// Other store paths symlinks point into: `<hash>-<name>` -> (first link, its target).
    pub link_targets: BTreeMap<String, (PathBuf, PathBuf)>,
}

/// Digest, size and reference scan of a NAR stream.
struct HashSink {
    sha: Sha256,
    size: u64,
    scanner: Option<RefScanner>,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha.update(buf);
        self.size += buf.len() as u64;
        if let Some(scanner) = &mut self.scanner {
            scanner.feed(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Walker<'a> {
    rules: Rules<'a>,
    mode: Option<CopyMode>,
    nar: NarEncoder<HashSink>,
    link_targets: BTreeMap<String, (PathBuf, PathBuf)>,
    buf: Vec<u8>,
}

/// Serialises the tree at `src` (a file, symlink or directory; a symlink at the top is not
/// followed) and, with `dest`, copies it there. `dest` must not exist; its parent must.
pub(crate) fn walk(
    src: &Path,
    dest: Option<(&Path, CopyMode)>,
    rules: Rules<'_>,
    scanner: Option<RefScanner>,
) -> Result<TreeSummary> {
    let sink = HashSink {
        sha: Sha256::new(),
        size: 0,
        scanner,
    };
    let nar = NarEncoder::new(sink).map_err(|e| read_error(src, e))?;
    let mut walker = Walker {
        rules,
        mode: dest.map(|(_, mode)| mode),
        nar,
        link_targets: BTreeMap::new(),
        buf: vec![0; CHUNK],
    };
    let meta = fs::symlink_metadata(src).map_err(|e| read_error(src, e))?;
    walker.node(src, dest.map(|(d, _)| d), 0, &meta)?;
    let Walker {
        nar, link_targets, ..
    } = walker;
    let sink = nar.into_inner();
    Ok(TreeSummary {
        nar_hash: format_sha256(&sink.sha.finalize()),
        nar_size: sink.size,
        references: sink.scanner.map(RefScanner::into_found).unwrap_or_default(),
        link_targets,
    })
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::ReadSource {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

impl Walker<'_> {
    /// One node; `depth` is how far the directory holding it lies below the store directory.
    fn node(
        &mut self,
        src: &Path,
        dest: Option<&Path>,
        depth: usize,
        meta: &Metadata,
    ) -> Result<()> {
        let kind = meta.file_type();
        if kind.is_symlink() {
            self.symlink(src, dest, depth)
        } else if kind.is_file() {
            self.file(src, dest)
        } else if kind.is_dir() {
            self.directory(src, dest, depth)
        } else {
            let kind = if kind.is_fifo() {
                "a named pipe (FIFO)"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_char_device() {
                "a character device"
            } else if kind.is_block_device() {
                "a block device"
            } else {
                "of an unknown file type"
            };
            Err(Error::UnsupportedFileType {
                path: src.to_path_buf(),
                kind,
            })
        }
    }

    fn symlink(&mut self, src: &Path, dest: Option<&Path>, depth: usize) -> Result<()> {
        let target = fs::read_link(src).map_err(|e| read_error(src, e))?;
        match classify_symlink(
            self.rules.store_dir,
            self.rules.own,
            depth,
            target.as_os_str(),
        ) {
            // Kept as a link: an image path is resolved against the image's root at run time,
            // never on the build host.
            Ok(LinkTarget::Inside | LinkTarget::Image) => {}
            Ok(LinkTarget::Other(base)) => {
                self.link_targets
                    .entry(base)
                    .or_insert_with(|| (src.to_path_buf(), target.clone()));
            }
            Err(why) => {
                return Err(Error::SymlinkEscapes {
                    link: src.to_path_buf(),
                    target,
                    store_dir: self.rules.store_dir.to_string(),
                    why,
                })
            }
        }
        self.nar
            .symlink(target.as_os_str().as_bytes())
            .map_err(|e| read_error(src, e))?;
        if let Some(dest) = dest {
            std::os::unix::fs::symlink(&target, dest).map_err(|e| write_error(dest, e))?;
            self.finish(None, dest)?;
        }
        Ok(())
    }

    fn file(&mut self, src: &Path, dest: Option<&Path>) -> Result<()> {
        // Never through a link: a file replaced by one since it was listed is refused.
        let mut input = File::options()
            .read(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(src)
            .map_err(|e| read_error(src, e))?;
        // Length and mode from the open file, so they describe the bytes we read.
        let meta = input.metadata().map_err(|e| read_error(src, e))?;
        if !meta.is_file() {
            return Err(read_error(
                src,
                io::Error::other("the file was replaced while the store read it; try again"),
            ));
        }
        let executable = meta.permissions().mode() & EXECUTABLE != 0;
        let len = meta.len();
        let mut output = match dest {
            Some(dest) => Some(
                File::options()
                    .write(true)
                    .create_new(true)
                    .open(dest)
                    .map_err(|e| write_error(dest, e))?,
            ),
            None => None,
        };
        self.nar
            .begin_regular(executable, len)
            .map_err(|e| read_error(src, e))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = match input.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(read_error(
                        src,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while the store read it; try again",
                        ),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(src, e)),
            };
            self.nar
                .contents(&self.buf[..n])
                .map_err(|e| read_error(src, e))?;
            if let (Some(out), Some(dest)) = (&mut output, dest) {
                out.write_all(&self.buf[..n])
                    .map_err(|e| write_error(dest, e))?;
            }
            left -= n as u64;
        }
        self.nar.end_regular(len).map_err(|e| read_error(src, e))?;
        if let (Some(out), Some(dest)) = (output, dest) {
            let mode = if executable { 0o555 } else { 0o444 };
            out.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| write_error(dest, e))?;
            self.finish(Some(&out), dest)?;
        }
        Ok(())
    }

    fn directory(&mut self, src: &Path, dest: Option<&Path>, depth: usize) -> Result<()> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(src).map_err(|e| read_error(src, e))? {
            let entry = entry.map_err(|e| read_error(src, e))?;
            entries.push(entry.file_name());
        }
        // NAR order: by name bytes.
        entries.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if let Some(dest) = dest {
            fs::create_dir(dest).map_err(|e| write_error(dest, e))?;
        }
        self.nar.begin_directory().map_err(|e| read_error(src, e))?;
        for name in entries {
            let child = src.join(&name);
            let child_dest = dest.map(|d| d.join(&name));
            let meta = fs::symlink_metadata(&child).map_err(|e| read_error(&child, e))?;
            self.nar
                .begin_entry(name.as_bytes())
                .map_err(|e| read_error(&child, e))?;
            self.node(&child, child_dest.as_deref(), depth + 1, &meta)?;
            self.nar.end_entry().map_err(|e| read_error(&child, e))?;
        }
        self.nar.end_directory().map_err(|e| read_error(src, e))?;
        if let Some(dest) = dest {
            let mode = match self.mode {
                Some(CopyMode::Materialize) => 0o555,
                _ => 0o755,
            };
            fs::set_permissions(dest, fs::Permissions::from_mode(mode))
                .map_err(|e| write_error(dest, e))?;
            let dir = match self.mode {
                Some(CopyMode::Store) => Some(File::open(dest).map_err(|e| write_error(dest, e))?),
                _ => None,
            };
            self.finish(dir.as_ref(), dest)?;
        }
        Ok(())
    }

    /// Durability for a stored node, times for a materialised one (`file` is the node opened,
    /// for the fsync; `None` for a symlink).
    fn finish(&self, file: Option<&File>, dest: &Path) -> Result<()> {
        match self.mode {
            Some(CopyMode::Store) => match file {
                Some(file) => file.sync_all().map_err(|e| write_error(dest, e)),
                None => Ok(()),
            },
            Some(CopyMode::Materialize) => {
                let t = Timespec {
                    tv_sec: MATERIALIZED_TIME,
                    tv_nsec: 0,
                };
                let times = Timestamps {
                    last_access: t,
                    last_modification: t,
                };
                utimensat(CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| write_error(dest, e.into()))
            }
            None => Ok(()),
        }
    }
}
