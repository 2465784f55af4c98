//! The client's error type: a variant per failure class, with the file, role or target it
//! concerns. Verification refusals keep the [`crate::Error`] that explains them as their
//! source, so a caller can tell an expired role from a bad signature from a rollback.

use std::path::PathBuf;

use crate::client::transport::TransportError;
use crate::metadata::Role;

/// Every way a refresh or a download can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store has no trusted root yet.
    #[error("the metadata store {} holds no trusted root (root.json); initialise it with the pinned root metadata first", dir.display())]
    NotInitialised { dir: PathBuf },
    /// `init` was asked to replace the trusted root of an existing store.
    #[error("the metadata store {} already holds a trusted root; refusing to replace it (remove the directory to start again from a pinned root)", dir.display())]
    AlreadyInitialised { dir: PathBuf },
    /// Reading or writing a file of the store failed.
    #[error("metadata store {}: {source}; check the disk and its permissions", path.display())]
    StoreIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The trusted root in the store, or the root given to `init`, does not verify.
    #[error("the trusted root {} is not valid: {source}; re-initialise the store from the pinned root metadata", path.display())]
    TrustedRoot {
        path: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
    /// The store's last trusted time file is unreadable.
    #[error("metadata store file {}: {why}; delete it only if the system clock is known to be right", path.display())]
    TimeFile { path: PathBuf, why: String },
    /// A file the signed metadata requires is not in the repository.
    #[error("{what} ({path}) is not in the repository; the mirror is incomplete or out of date")]
    Missing { what: String, path: String },
    /// The transport failed (I/O, network, a server error).
    #[error("cannot fetch {what} ({path}): {source}; check the network and the mirror")]
    Fetch {
        what: String,
        path: String,
        #[source]
        source: TransportError,
    },
    /// More bytes than allowed: the limit for metadata of unknown length, the signed length
    /// otherwise (endless-data attack).
    #[error("{what} ({path}) is longer than {limit} bytes; refusing endless data")]
    TooLarge {
        what: String,
        path: String,
        limit: u64,
    },
    /// Metadata refused by the specification's checks (signatures, versions, expiry, hashes).
    #[error("{role} metadata {path} refused: {source}")]
    Metadata {
        role: Role,
        path: String,
        #[source]
        source: Box<crate::Error>,
    },
    /// A target's content differs from its signed length or hashes, or has no sha256.
    #[error("target {name} ({path}) refused: {source}")]
    Target {
        name: String,
        path: String,
        #[source]
        source: Box<crate::Error>,
    },
    /// No target of that name in the trusted targets metadata.
    #[error("no target named {name:?} in the trusted targets metadata; check the name, or publish the release")]
    UnknownTarget { name: String },
    /// A target name that cannot be turned into a safe repository path.
    #[error(
        "target name {name:?} is unsafe: {why}; the repository's targets metadata is malformed"
    )]
    UnsafeTargetName { name: String, why: &'static str },
    /// Writing a downloaded target to its destination failed.
    #[error("cannot write target {name}: {source}; check the destination's space and permissions")]
    Write {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// Targets were asked for before a successful refresh.
    #[error("no trusted targets metadata: refresh first (the last refresh failed or none ran)")]
    NotRefreshed,
}

impl Error {
    /// The verification failure behind a refusal, if this is one (to tell `Expired` from a
    /// bad signature or a rollback when choosing an exit code).
    pub fn tuf_error(&self) -> Option<&crate::Error> {
        match self {
            Error::TrustedRoot { source, .. }
            | Error::Metadata { source, .. }
            | Error::Target { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
