//! Every failure of the store crate, a variant per failure class, each message saying what
//! happened and what to do.

use std::io;
use std::path::PathBuf;

/// Result of the store crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- bad input: what the user gave cannot be used --------------------------------------
    #[error("source directory {} does not exist: give the directory whose files the store path should hold", path.display())]
    SourceMissing { path: PathBuf },

    #[error("{} is not a directory: the store adds directories; put the file in a directory first", path.display())]
    SourceNotDirectory { path: PathBuf },

    #[error(
        "{name:?} is not a valid store path name (use letters, digits and . _ + -, e.g. hello-1.0)"
    )]
    InvalidName {
        name: String,
        #[source]
        source: flipside_contract::release::Error,
    },

    #[error("{spec} is not a store path: give /flipside/store/<hash>-<name> or its host path in the built-in store, or /nix/store/<hash>-<name>")]
    NotAStorePath { spec: String },

    #[error("{path} is a built-in store path but no built-in store was given: pass --store DIR or set FLIPSIDE_STORE")]
    NoBuiltinStore { path: String },

    #[error("{} is not a flipside store (it is a non-empty directory without {}): give an empty or new directory, or the right store", dir.display(), crate::builtin::MARKER)]
    NotAStore { dir: PathBuf },

    #[error("{origin}: {why}")]
    NixInfo { origin: String, why: String },

    #[error("{}:{line}: {why} (expected the `nix-store --load-db` registration format of Nix's closureInfo)", path.display())]
    Registration {
        path: PathBuf,
        line: usize,
        why: String,
    },

    #[error("no release.json at {}: give a release.json file or the output directory of `flipside-build image`", path.display())]
    ReleaseNotFound { path: PathBuf },

    #[error("{} is not a release description: fix or rebuild it", path.display())]
    ParseRelease {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{} is not a valid release description", path.display())]
    InvalidRelease {
        path: PathBuf,
        #[source]
        source: flipside_contract::release::Error,
    },

    // --- the store: a path is missing, dangling, escapes, or is not what was recorded -------
    #[error("{path} is not in the store: add it first (`flipside-build store add`, `nix-build`)")]
    NotInStore { path: String },

    #[error("{reference} is referenced by --ref but is not in the store at {}: add it first", store.display())]
    RefNotInStore { reference: String, store: PathBuf },

    #[error("{path} references {reference}, which is not in the store: the store is incomplete; add the missing path again or rebuild {path}")]
    DanglingReference { path: String, reference: String },

    #[error("symlink {} -> {} points to {why}: a store path may link inside itself, into another store path under {store_dir}, or to an absolute path of the image outside the store (like /dev/null); fix the link", link.display(), target.display())]
    SymlinkEscapes {
        link: PathBuf,
        target: PathBuf,
        store_dir: String,
        why: &'static str,
    },

    #[error("symlink {} -> {} points into {base}, which is not in the store at {}: add that path first", link.display(), target.display(), store.display())]
    SymlinkTargetMissing {
        link: PathBuf,
        target: PathBuf,
        base: String,
        store: PathBuf,
    },

    #[error("{} is {kind}: store paths hold only directories, regular files and symlinks; remove it from the source", path.display())]
    UnsupportedFileType { path: PathBuf, kind: &'static str },

    #[error("{path} is corrupt: its content hash is {actual}, the store recorded {expected}; it was modified after it was added: delete {} and add it again", source_path.display())]
    Corrupt {
        path: String,
        source_path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("store metadata {} is unreadable: {why}; delete it and the path beside it, then add the path again", path.display())]
    BadMetadata { path: PathBuf, why: String },

    // --- external tools -----------------------------------------------------------------------
    #[error("`{tool}` could not be run: install Nix (Debian: apt-get install nix-bin) or give the closure as a file (--nix-path-info, --closure-info)")]
    ToolMissing {
        tool: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },

    // --- files ----------------------------------------------------------------------------------
    #[error("cannot read {}: check that it exists and is readable", path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {}: check permissions and free space", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
