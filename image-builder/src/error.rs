//! Failure classes of the builder and the exit codes `flipside-build` maps them to.
//!
//! Every module and library crate has its own error enum; each variant belongs to one
//! [`Class`], and the class decides the process exit code. The table is part of the
//! command-line contract and is repeated in the README and in `flipside-build --help`.

/// What kind of failure happened, from the operator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A bug or an unexpected state: exit 1.
    Internal,
    /// The system description, an argument or a name is invalid: exit 3.
    Input,
    /// A store path is missing, dangling, escapes the store, or cannot be read: exit 4.
    Store,
    /// The image does not fit the configured slot size: exit 5.
    TooLarge,
    /// A signing key is missing, wrong, or too few keys meet a threshold: exit 6.
    Key,
    /// Metadata in the repository has expired (re-sign or rotate): exit 7.
    Expired,
    /// The repository on disk is missing, corrupt or inconsistent: exit 8.
    Repository,
    /// An external tool (mksquashfs, nix) is missing or failed: exit 9.
    Tool,
    /// Reading or writing a file failed (permissions, disk full): exit 10.
    Io,
    /// Uploading to object storage failed (network, credentials, quota) or the destination
    /// holds another repository: exit 11.
    Upload,
}

impl Class {
    /// The documented process exit code for this class.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Internal => 1,
            Class::Input => 3,
            Class::Store => 4,
            Class::TooLarge => 5,
            Class::Key => 6,
            Class::Expired => 7,
            Class::Repository => 8,
            Class::Tool => 9,
            Class::Io => 10,
            Class::Upload => 11,
        }
    }
}

/// Any failure of the builder, by module or library crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] flipside_store::Error),
    #[error(transparent)]
    Bundle(#[from] flipside_bundle::Error),
    #[error(transparent)]
    Repository(#[from] flipside_repository::Error),
    #[error(transparent)]
    System(#[from] crate::system::Error),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Uki(#[from] crate::uki::Error),
    #[error(transparent)]
    SecureBoot(#[from] crate::secureboot::Error),
    #[error(transparent)]
    Upload(#[from] flipside_repository_upload::Error),
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Store(e) => crate::commands::store::class(e),
            Error::Bundle(e) => crate::image::bundle_class(e),
            Error::Repository(e) => crate::commands::repo::class(e),
            Error::System(e) => e.class(),
            Error::Rootfs(e) => e.class(),
            Error::Image(e) => e.class(),
            Error::Uki(e) => e.class(),
            Error::SecureBoot(e) => e.class(),
            Error::Upload(e) => crate::commands::publish::class(e),
        }
    }
}
