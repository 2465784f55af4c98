//! Builds and reads flipside bundles: a root-filesystem image cut into content-defined chunks
//! (FastCDC), each compressed as one zstd frame, the frames concatenated in image order (so
//! `zstd -d < bundle` is the image), described by a chunk index
//! ([`flipside_contract::index`]). The format is documented in `docs/bundle-format.md`.
//!
//! - [`write_bundle`]: the builder side, one pass over the image, parallel and deterministic;
//!   [`write_bundle_with`] adds delta frames against previous releases ([`Previous`]); both
//!   append the image's segments (large frames for full installs, `segment`).
//! - [`extract`] / [`read_bundle`]: rebuild an image, verifying every chunk and the whole.
//! - [`write_index`] / [`read_index`]: the index file.

mod atomic;
mod delta;
mod error;
mod params;
mod read;
mod segment;
mod write;

pub use delta::{features as delta_features, Previous};
pub use error::Error;
pub use flipside_contract::index::{
    ChunkEntry, ChunkIndex, ChunkerParams, DeltaEntry, Limits, SegmentEntry,
};
pub use params::{BundleParams, DEFAULT_ZSTD_LEVEL, MAX_DICTIONARY, SUGGESTED_DICTIONARY};
pub use read::{extract, read_bundle, read_index, write_index};
pub use write::{write_bundle, write_bundle_with, write_bundle_with_progress, BATCH_BYTES};
