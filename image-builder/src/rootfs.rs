//! The root filesystem: a staging tree laid out exactly as the image will be, then packed by
//! `mksquashfs` into a bit-for-bit reproducible squashfs.
//!
//! Format choice (see REFERENCE section 6): squashfs *without* compression or fragments. The
//! bundle compresses every content-defined chunk itself, so compression inside the filesystem
//! would only make chunks differ between releases; without fragments, a small file's bytes
//! stay together and an unchanged file keeps its bytes, so chunks are reused across releases.
//! Reproducibility: modes are normalised while staging, owners, times and xattrs are fixed
//! or dropped by mksquashfs flags, and mksquashfs sorts directory entries itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Class;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mksquashfs is not installed ({source}); install squashfs-tools (apt-get install squashfs-tools)")]
    ToolMissing { source: std::io::Error },
    #[error("mksquashfs failed with {status}: {stderr}")]
    ToolFailed {
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("init {init} is not an executable file in the image ({why}); point `init` at a program of one of the roots")]
    BadInit { init: String, why: String },
    #[error("{path} is created twice in the image (by {first} and {second}); remove one of them")]
    Clash {
        path: String,
        first: String,
        second: String,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Io { .. } => Class::Io,
            Error::ToolMissing { .. } | Error::ToolFailed { .. } => Class::Tool,
            Error::BadInit { .. } | Error::Clash { .. } => Class::Input,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What the image holds besides the store paths themselves.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Absolute paths of empty directories (mount points).
    pub mountpoints: Vec<String>,
    /// Absolute link path -> target, already resolved.
    pub symlinks: Vec<(String, String)>,
    /// Absolute path of the init program; `/init` links to it.
    pub init: String,
    /// Absolute path and contents of files the builder writes (e.g. the system info).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Creates the directories leading to `dest` (inside the stage) with mode 0755. A symlink on
/// the way is refused, not followed: an absolute one would lead to the build host.
pub fn create_parents(stage: &Path, dest: &str) -> Result<PathBuf, Error> {
    let target = stage.join(dest.trim_start_matches('/'));
    let mut dir = stage.to_path_buf();
    if let Some(parent) = Path::new(dest.trim_start_matches('/')).parent() {
        for part in parent.components() {
            dir.push(part);
            match dir.symlink_metadata() {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(io("create directory", &dir)(std::io::Error::other(
                        "a symlink is there, and the builder never follows one on the build host",
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(io("create directory", &dir))?;
                    set_mode(&dir, 0o755)?;
                }
                Err(e) => return Err(io("inspect", &dir)(e)),
            }
        }
    }
    Ok(target)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io("set permissions of", path))
}

/// Adds the layout to a stage that already holds the store paths.
pub fn add_layout(stage: &Path, layout: &Layout) -> Result<(), Error> {
    set_mode(stage, 0o755)?;
    let mut made: Vec<(&str, &str)> = Vec::new();
    for m in &layout.mountpoints {
        let dir = create_parents(stage, m)?;
        check_free(m, &dir, &made, "a mountpoint")?;
        fs::create_dir(&dir).map_err(io("create directory", &dir))?;
        // /tmp is world-writable with the sticky bit, like on any Linux system.
        set_mode(&dir, if m == "/tmp" { 0o1777 } else { 0o755 })?;
        made.push((m, "a mountpoint"));
    }
    let init_link = ("/init".to_string(), layout.init.clone());
    for (link, target) in layout.symlinks.iter().chain(std::iter::once(&init_link)) {
        let path = create_parents(stage, link)?;
        check_free(link, &path, &made, "a symlink")?;
        std::os::unix::fs::symlink(target, &path).map_err(io("create symlink", &path))?;
        made.push((link, "a symlink"));
    }
    for (name, contents) in &layout.files {
        let path = create_parents(stage, name)?;
        check_free(name, &path, &made, "a flipside file")?;
        fs::write(&path, contents).map_err(io("write", &path))?;
        set_mode(&path, 0o444)?;
        made.push((name, "a flipside file"));
    }
    check_init(stage, &layout.init)
}

/// Refuses to create `name` where something already is, naming both creators.
fn check_free(name: &str, path: &Path, made: &[(&str, &str)], what: &str) -> Result<(), Error> {
    if path.symlink_metadata().is_ok() {
        let first = made
            .iter()
            .find(|(p, _)| *p == name)
            .map_or("a store path", |(_, w)| w);
        return Err(Error::Clash {
            path: name.to_string(),
            first: first.to_string(),
            second: what.to_string(),
        });
    }
    Ok(())
}

/// Follows `init` inside the stage (absolute links resolve against the stage, never the
/// host) and requires an executable regular file at the end.
pub fn check_init(stage: &Path, init: &str) -> Result<(), Error> {
    let bad = |why: String| Error::BadInit {
        init: init.to_string(),
        why,
    };
    let mut current = PathBuf::from(init);
    for _ in 0..40 {
        let resolved = resolve_in_stage(stage, &current).map_err(&bad)?;
        let meta = resolved
            .symlink_metadata()
            .map_err(|_| bad(format!("{} does not exist", current.display())))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&resolved).map_err(io("read link", &resolved))?;
            let inside = resolved.strip_prefix(stage).unwrap_or(&resolved);
            current = if target.is_absolute() {
                target
            } else {
                Path::new("/")
                    .join(inside)
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join(target)
            };
            continue;
        }
        if !meta.is_file() {
            return Err(bad(format!("{} is not a regular file", current.display())));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(bad(format!("{} is not executable", current.display())));
        }
        return Ok(());
    }
    Err(bad("too many levels of symbolic links".into()))
}

/// Maps an absolute image path to the stage, resolving symlinks of its parent directories
/// inside the stage and `..` lexically, never leaving the stage.
fn resolve_in_stage(stage: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            parts.pop();
            continue;
        }
        let candidate: PathBuf = stage.join(parts.iter().collect::<PathBuf>()).join(&part);
        // Only directories on the way need resolving; the last component is the caller's.
        if !pending.is_empty() {
            if let Ok(target) = fs::read_link(&candidate) {
                hops += 1;
                if hops > 40 {
                    return Err("too many levels of symbolic links".into());
                }
                if target.is_absolute() {
                    parts.clear();
                }
                for c in target.components().rev() {
                    match c {
                        std::path::Component::Normal(s) => pending.push(s.to_os_string()),
                        std::path::Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
                continue;
            }
        }
        parts.push(part);
    }
    Ok(stage.join(parts.iter().collect::<PathBuf>()))
}

/// The memory mksquashfs may use for its caches. By default it takes a quarter of the build
/// host's RAM and fills it on large images (1.8 GiB for a 2 GiB image); without compression
/// its threads only copy, so a small cache costs no time and the output does not depend on it.
pub const MKSQUASHFS_MEMORY: &str = "64M";

/// Packs the stage into a squashfs at `out`; returns its length in bytes.
pub fn make_squashfs(stage: &Path, out: &Path) -> Result<u64, Error> {
    let output = Command::new("mksquashfs")
        .arg(stage)
        .arg(out)
        .args([
            "-noappend",
            "-no-xattrs",
            "-all-root",
            "-mkfs-time",
            "0",
            "-all-time",
            "0",
        ])
        .args([
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-fragments",
            "-reproducible",
        ])
        .args(["-mem", MKSQUASHFS_MEMORY])
        .args(["-quiet", "-no-progress"])
        .output()
        .map_err(|source| Error::ToolMissing { source })?;
    if !output.status.success() {
        return Err(Error::ToolFailed {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(fs::metadata(out).map_err(io("read size of", out))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage_with_busybox() -> tempfile::TempDir {
        let stage = tempfile::tempdir().unwrap();
        let bin = stage.path().join("flipside/store/abc-busybox/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("busybox"), b"#!/bin/true\n").unwrap();
        set_mode(&bin.join("busybox"), 0o555).unwrap();
        std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
        fs::write(bin.join("data"), b"not a program").unwrap();
        stage
    }

    fn layout(init: &str) -> Layout {
        Layout {
            mountpoints: vec!["/proc".into(), "/tmp".into()],
            symlinks: vec![("/bin".into(), "/flipside/store/abc-busybox/bin".into())],
            init: init.into(),
            files: vec![("/.flipside/system.json".into(), b"{}".to_vec())],
        }
    }

    #[test]
    fn init_is_followed_through_links_inside_the_stage() {
        let stage = stage_with_busybox();
        add_layout(stage.path(), &layout("/bin/sh")).unwrap();
        assert_eq!(
            fs::read_link(stage.path().join("init")).unwrap(),
            Path::new("/bin/sh")
        );
        let tmp = fs::metadata(stage.path().join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    }

    #[test]
    fn bad_init_is_refused_with_the_reason() {
        for (init, why) in [
            ("/bin/data", "not executable"),
            ("/bin/nothing", "does not exist"),
            ("/flipside/store/abc-busybox", "not a regular file"),
        ] {
            let stage = stage_with_busybox();
            let err = add_layout(stage.path(), &layout(init)).unwrap_err();
            assert!(matches!(err, Error::BadInit { .. }), "{init}: {err}");
            assert!(err.to_string().contains(why), "{init}: {err}");
        }
    }

    #[test]
    fn host_paths_are_never_followed() {
        // An absolute link must resolve inside the stage, not on the build host.
        let stage = stage_with_busybox();
        let mut l = layout("/hostsh/sh");
        l.symlinks.push(("/hostsh".into(), "/bin".into()));
        add_layout(stage.path(), &l).unwrap();
        let stage = stage_with_busybox();
        let mut l = layout("/usr/bin/env");
        l.symlinks.clear();
        assert!(matches!(
            add_layout(stage.path(), &l),
            Err(Error::BadInit { .. })
        ));
    }

    #[test]
    fn parents_are_never_created_through_a_symlink() {
        // A link of the stage to a directory of the build host, as a tree's absolute link is.
        let host = tempfile::tempdir().unwrap();
        let stage = stage_with_busybox();
        std::os::unix::fs::symlink(host.path(), stage.path().join("lib")).unwrap();
        let err = create_parents(stage.path(), "/lib/modules/x").unwrap_err();
        assert!(err.to_string().contains("a symlink is there"), "{err}");
        assert_eq!(fs::read_dir(host.path()).unwrap().count(), 0);
        // Below the stage's own directories it creates what is missing.
        let made = create_parents(stage.path(), "/flipside/store/abc-busybox/share/x").unwrap();
        assert!(made.parent().unwrap().is_dir());
    }

    #[test]
    fn clashes_name_both_sides() {
        let stage = stage_with_busybox();
        let mut l = layout("/bin/sh");
        l.mountpoints.push("/flipside".into());
        let err = add_layout(stage.path(), &l).unwrap_err();
        assert!(
            err.to_string().contains("/flipside is created twice"),
            "{err}"
        );
    }
}
