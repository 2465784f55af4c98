//! Where verified release metadata comes from: a small trait the install and check commands
//! use, so that the TUF client (specification 1.0 section 5, `flipside_tuf::client`) plugs in
//! behind it. Implementations verify; callers trust what they return:
//!
//! - [`UpdateSource::refresh`] runs the top-level-roles workflow (root, timestamp, snapshot,
//!   targets) and returns every target of the verified targets metadata;
//! - [`UpdateSource::fetch_target`] downloads one target, reading at most its signed length,
//!   and checks its signed sha256 (section 5.7);
//! - [`UpdateSource::target_locations`] says where the bundle is (one location per mirror) and
//!   [`UpdateSource::open_range`] opens a byte range of it, so that it can be streamed with
//!   Range requests and verified chunk by chunk against the (verified) index instead.
//!
//! Two implementations: the TUF client over the configured mirrors ([`crate::tuf_client`]),
//! and [`memory::MemorySource`], a repository in memory for the tests of the install steps.

use std::ops::Range;
use std::path::PathBuf;

use flipside_tuf::client::TargetName;

use crate::config::{Location, Mirror, NetworkPolicy};
use crate::error::Result;
use crate::http::ByteStream;

#[cfg(test)]
pub mod memory;

/// One target of the verified targets metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Target name, e.g. `kiosk-8.bundle`, checked to be usable in a repository path.
    pub name: TargetName,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed sha256.
    pub sha256: [u8; 32],
    /// The target's `custom` object, if any (flipside's fields are under `flipside`).
    pub custom: Option<serde_json::Value>,
}

impl TargetInfo {
    /// The consistent-snapshot file name: `targets/{sha256}.{name}` (the digest prefixes the
    /// last component of a name with directories).
    pub fn repository_path(&self) -> String {
        self.name.repository_path(Some(&hex::encode(self.sha256)))
    }
}

/// Verified metadata and targets of one repository (served by one or more mirrors).
pub trait UpdateSource {
    /// Updates the trusted metadata (TUF 1.0 sections 5.3 to 5.6) and returns every target.
    fn refresh(&mut self) -> Result<Vec<TargetInfo>>;

    /// The bytes of `target`, at most `target.length` of them, checked against its sha256.
    fn fetch_target(&mut self, target: &TargetInfo) -> Result<Vec<u8>>;

    /// Where `target` can be read with Range requests, mirrors in order.
    fn target_locations(&self, target: &TargetInfo) -> Vec<Location>;

    /// Opens bytes `range` of the file at `location` (one of [`Self::target_locations`]),
    /// whose signed length is `total`: the stream yields exactly those bytes or fails.
    fn open_range(
        &self,
        location: &Location,
        range: Range<u64>,
        total: u64,
    ) -> Result<Box<dyn ByteStream>>;

    /// Whether the server at `location` answered a Range request with the whole file, so that
    /// each further request would send everything before its range again.
    fn ignores_range(&self, location: &Location) -> bool;
}

/// What a source is built from: the configured (or `--from`) mirrors, the pinned root, a
/// directory the source may keep its trusted metadata in, and the network policy.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub mirrors: Vec<Mirror>,
    pub trusted_root: PathBuf,
    pub metadata_dir: PathBuf,
    pub network: NetworkPolicy,
}

/// Builds the source for a command.
pub type SourceFactory = dyn Fn(&SourceSpec) -> Result<Box<dyn UpdateSource>>;

/// The production source: the TUF client of `flipside_tuf::client` (see
/// [`crate::tuf_client`]).
pub fn tuf_source(spec: &SourceSpec) -> Result<Box<dyn UpdateSource>> {
    crate::tuf_client::tuf_source(spec)
}
