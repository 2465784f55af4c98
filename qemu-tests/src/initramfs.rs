//! The initramfs: a cpio (newc) archive compressed with zstd, built reproducibly: entries
//! sorted by path, every mtime 0, owner root, inode numbers by position. Its `/init`
//! (`qemu-tests/initramfs/init.sh`) loads the modules, lets `flipside-select` pick the slot,
//! mounts it read-only and switches into it.
//!
//! The list of entries ([`Entry`]) is built from the assets without touching the archive, and
//! [`write_archive`] turns any list into bytes, so both are tested apart.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The `/init` script of the initramfs.
pub const INIT_SCRIPT: &str = include_str!("../initramfs/init.sh");

/// zstd level of the archive: small enough to load fast, cheap enough to build every run.
const ZSTD_LEVEL: i32 = 12;

/// What goes into the initramfs besides the init script.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// A static busybox; `/bin/busybox`, its applets linked at boot.
    pub busybox: PathBuf,
    /// A static `flipside-select`; `/bin/flipside-select`.
    pub flipside_select: PathBuf,
    /// A static `flipside-verity`; `/bin/flipside-verity`.
    pub flipside_verity: PathBuf,
    /// Kernel modules in load order; `/lib/modules/<name>`, their order in
    /// `/lib/modules/load-order`.
    pub modules: Vec<PathBuf>,
}

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File {
        mode: u32,
        contents: Vec<u8>,
    },
    Symlink(String),
    /// A character device node (major, minor), e.g. `/dev/console` for init's first output.
    CharDevice(u32, u32),
}

/// The members of the archive, keyed by path without the leading slash.
pub fn entries(inputs: &Inputs) -> Result<BTreeMap<String, Entry>> {
    entries_with_init(inputs, INIT_SCRIPT)
}

/// The members of an archive whose `/init` is `init` (a broken initramfs for a failure test).
pub fn entries_with_init(inputs: &Inputs, init: &str) -> Result<BTreeMap<String, Entry>> {
    let mut tree = BTreeMap::new();
    for dir in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "newroot",
        "proc",
        "run",
        "sys",
    ] {
        tree.insert(dir.to_string(), Entry::Dir);
    }
    tree.insert("dev/console".into(), Entry::CharDevice(5, 1));
    tree.insert(
        "init".into(),
        Entry::File {
            mode: 0o755,
            contents: init.as_bytes().to_vec(),
        },
    );
    tree.insert("bin/busybox".into(), executable(&inputs.busybox)?);
    tree.insert("bin/sh".into(), Entry::Symlink("busybox".into()));
    tree.insert(
        "bin/flipside-select".into(),
        executable(&inputs.flipside_select)?,
    );
    tree.insert(
        "bin/flipside-verity".into(),
        executable(&inputs.flipside_verity)?,
    );
    let mut order = String::new();
    for module in &inputs.modules {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Io {
                action: "name a module after",
                path: module.clone(),
                source: std::io::ErrorKind::InvalidInput.into(),
            })?;
        let contents = fs::read(module).map_err(Error::io("read", module))?;
        tree.insert(
            format!("lib/modules/{name}"),
            Entry::File {
                mode: 0o644,
                contents,
            },
        );
        order.push_str(name.trim_end_matches(".ko"));
        order.push('\n');
    }
    tree.insert(
        "lib/modules/load-order".into(),
        Entry::File {
            mode: 0o644,
            contents: order.into_bytes(),
        },
    );
    Ok(tree)
}

fn executable(path: &Path) -> Result<Entry> {
    let contents = fs::read(path).map_err(Error::io("read", path))?;
    Ok(Entry::File {
        mode: 0o755,
        contents,
    })
}

/// The uncompressed newc archive of `tree`, deterministic for a given tree.
pub fn write_archive(tree: &BTreeMap<String, Entry>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (ino, (path, entry)) in (1u32..).zip(tree) {
        let builder = cpio::newc::Builder::new(path)
            .ino(ino)
            .uid(0)
            .gid(0)
            .mtime(0)
            .nlink(if matches!(entry, Entry::Dir) { 2 } else { 1 });
        let (builder, data): (_, &[u8]) = match entry {
            Entry::Dir => (builder.mode(0o040_755), &[]),
            Entry::File { mode, contents } => (builder.mode(0o100_000 | mode), contents),
            Entry::Symlink(target) => (builder.mode(0o120_777), target.as_bytes()),
            Entry::CharDevice(major, minor) => (
                builder
                    .mode(0o020_600)
                    .rdev_major(*major)
                    .rdev_minor(*minor),
                &[],
            ),
        };
        let len = u32::try_from(data.len())
            .map_err(|_| std::io::Error::other(format!("{path} is larger than newc allows")))?;
        let mut w = builder.write(&mut out, len);
        w.write_all(data)?;
        w.finish()?;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

/// Builds the compressed initramfs of `inputs` at `out` (written to a temporary file next to
/// it, then renamed, so a reader never sees half an archive).
pub fn build(inputs: &Inputs, out: &Path) -> Result<()> {
    build_with_init(inputs, INIT_SCRIPT, out)
}

/// [`build`] with `init` as `/init`.
pub fn build_with_init(inputs: &Inputs, init: &str, out: &Path) -> Result<()> {
    let tree = entries_with_init(inputs, init)?;
    let archive = write_archive(&tree).map_err(Error::io("assemble the initramfs", out))?;
    let compressed = zstd::bulk::compress(&archive, ZSTD_LEVEL)
        .map_err(Error::io("compress the initramfs", out))?;
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create a file in", dir))?;
    tmp.write_all(&compressed)
        .map_err(Error::io("write", tmp.path()))?;
    // NamedTempFile is private (0600); the archive is no secret.
    let readable = std::fs::Permissions::from_mode(0o644);
    tmp.as_file()
        .set_permissions(readable)
        .map_err(Error::io("set permissions of", tmp.path()))?;
    tmp.persist(out).map_err(|e| Error::Io {
        action: "rename into place",
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<String, Entry> {
        BTreeMap::from([
            ("bin".into(), Entry::Dir),
            ("bin/sh".into(), Entry::Symlink("busybox".into())),
            ("dev/console".into(), Entry::CharDevice(5, 1)),
            (
                "init".into(),
                Entry::File {
                    mode: 0o755,
                    contents: b"#!/bin/sh\n".to_vec(),
                },
            ),
        ])
    }

    #[test]
    fn archive_is_deterministic_and_readable() {
        let a = write_archive(&sample()).unwrap();
        assert_eq!(a, write_archive(&sample()).unwrap());
        let mut reader = std::io::Cursor::new(a);
        let mut seen = Vec::new();
        loop {
            let r = cpio::NewcReader::new(&mut reader).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            seen.push((
                e.name().to_string(),
                e.mode(),
                e.mtime(),
                e.uid(),
                e.file_size(),
            ));
            r.finish().unwrap();
        }
        assert_eq!(
            seen,
            [
                ("bin".to_string(), 0o040_755, 0, 0, 0),
                ("bin/sh".to_string(), 0o120_777, 0, 0, 7),
                ("dev/console".to_string(), 0o020_600, 0, 0, 0),
                ("init".to_string(), 0o100_755, 0, 0, 10),
            ]
        );
    }

    #[test]
    fn init_script_uses_the_marker_prefix_and_the_selector() {
        assert!(INIT_SCRIPT.starts_with("#!/bin/busybox sh\n"));
        assert!(INIT_SCRIPT.contains(crate::markers::PREFIX.trim_end()));
        assert!(INIT_SCRIPT.contains("flipside-select --disk"));
        assert!(INIT_SCRIPT.contains("/lib/modules/load-order"));
    }
}
