//! Builds and reads flipside bundles: a root-filesystem image cut into content-defined chunks
//! (FastCDC), each compressed as one zstd frame, the frames concatenated in image order (so
//! `zstd -d < bundle` is the image), described by a chunk index
//! ([`flipside_contract::index`]). The format is documented in `docs/bundle-format.md`.
//!
//! - [`write_bundle`]: the builder side, one pass over the image, parallel and deterministic.
//! - [`extract`] / [`read_bundle`]: rebuild an image, verifying every chunk and the whole.
//! - [`write_index`] / [`read_index`]: the index file.

mod atomic;
mod error;
mod params;
mod read;
mod write;

pub use error::Error;
pub use flipside_contract::index::{ChunkEntry, ChunkIndex, ChunkerParams, Limits};
pub use params::{BundleParams, DEFAULT_ZSTD_LEVEL};
pub use read::{extract, read_bundle, read_index, write_index};
pub use write::{write_bundle, write_bundle_with_progress, BATCH_BYTES};
