//! The device side of TUF (specification 1.0, section 5 "detailed client workflow"): fetch a
//! repository's metadata through a [`Transport`], check it with [`crate::TrustedSet`], keep the
//! trusted files in a [`MetadataStore`], and download targets with their signed length as a
//! cap and every signed sha256 and sha512 checked before success is reported.
//!
//! ```text
//! MetadataStore::open_or_init(dir, pinned_root)   the device's trusted root, once
//! Client::new(store, transport, Limits::default())
//! client.refresh(now)?                            5.1-5.6 for the top-level roles
//! client.target("kiosk-8.bundle")?                5.6.7: pre-order search of delegations
//! client.download_target(name, &mut file)?        5.7: stream -> length cap -> digest -> file
//! ```
//!
//! Layering: [`transport`] and [`store`] do the I/O, [`secure_time`] and [`target`] are pure,
//! and [`workflow`] runs the specification's steps in order over them.

pub mod error;
pub mod secure_time;
pub mod store;
pub mod target;
pub mod transport;
pub mod workflow;

pub use error::Error;
pub use store::MetadataStore;
pub use target::{local_copy_matches, TargetName};
pub use transport::{FsTransport, Transport, TransportError};
pub use workflow::{Client, Refreshed, Versions};

/// Result type of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How much the client reads and how far it follows a root chain: the specification leaves
/// these numbers to the application (5.3.3 "W" and "Y", 5.4.1 "X", 5.5.1 "Y", 5.6.1 "Z").
///
/// The defaults are those of python-tuf's `ngclient` for sizes, and a rotation cap well above
/// what a repository rotates between two updates of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest root metadata file read, in bytes (default 512,000).
    pub max_root_size: u64,
    /// Largest `timestamp.json` read, in bytes (default 16,384): the timestamp is the one file
    /// fetched without a signed length, and it is fetched on every refresh.
    pub max_timestamp_size: u64,
    /// Largest snapshot read when the timestamp gives no length (default 2,000,000). When it
    /// gives one, exactly that many bytes are allowed.
    pub max_snapshot_size: u64,
    /// Largest targets metadata (top-level or delegated) read when the snapshot gives no
    /// length (default 5,000,000).
    pub max_targets_size: u64,
    /// Most new root versions fetched in one refresh (default 32). The chain continues on
    /// the next refresh: each accepted root is persisted at once (5.3.8).
    pub max_root_rotations: u32,
    /// Largest target [`Client::fetch_target_bytes`] holds in memory (default 64 MiB: a chunk
    /// index of a multi-gigabyte image is a few megabytes). Streaming downloads are capped by
    /// the signed length alone.
    pub max_target_in_memory: u64,
    /// Most roles (the top-level targets included) visited in one target search (default 32,
    /// python-tuf's `max_delegations`): a cycle or a deep tree of delegations ends there.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_root_size: 512_000,
            max_timestamp_size: 16_384,
            max_snapshot_size: 2_000_000,
            max_targets_size: 5_000_000,
            max_root_rotations: 32,
            max_target_in_memory: 64 << 20,
            max_delegations: crate::delegation::MAX_DELEGATIONS,
        }
    }
}
