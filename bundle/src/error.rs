//! The one error type of the crate: a variant per failure class, with the path it concerns.

use std::path::PathBuf;

use flipside_contract::index;

/// Failure to build or read a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid bundle parameters: {why}; fix the builder configuration")]
    InvalidParams { why: String },
    #[error("cannot start {threads} compression threads: {source}")]
    ThreadPool {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    #[error("cannot open image {path}: {source}")]
    OpenImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read image {path}: {source}")]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {path} is empty: there is nothing to install; check the image build")]
    EmptyImage { path: PathBuf },
    #[error("image {path} was {expected} bytes when opened but {read} were read: it changed while being bundled; rebuild it and bundle again")]
    ImageChanged {
        path: PathBuf,
        expected: u64,
        read: u64,
    },
    #[error("the previous release's image {path} does not hold the chunk its index names at offset {offset}: give the image that index describes")]
    PreviousMismatch { path: PathBuf, offset: u64 },
    #[error("zstd failed to compress the chunk at image offset {offset}: {source}")]
    Compress {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the chunk index built for {path} is invalid (a bug in the builder): {source}")]
    BuildIndex {
        path: PathBuf,
        #[source]
        source: index::Error,
    },
    #[error("cannot create a temporary file beside {path}: {source}; check the directory exists and is writable")]
    CreateOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check free space")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move the finished file into place as {path}: {source}")]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open bundle {path}: {source}")]
    OpenBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read bundle {path}: {source}")]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle {path} is {found} bytes but its index says {expected}: the bundle is truncated or the index belongs to another bundle")]
    BundleLength {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("chunk {chunk} of bundle {path} is refused: {source}")]
    Chunk {
        path: PathBuf,
        chunk: usize,
        #[source]
        source: index::Error,
    },
    #[error("the image rebuilt from bundle {path} has sha256 {found}, its index says {expected}: the index belongs to another image")]
    ImageHash {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("cannot write the image to its destination: {source}")]
    WriteSink {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read chunk index {path}: {source}")]
    ReadIndex {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk index {path} is {length} bytes, more than the {limit} the limits allow")]
    IndexTooLarge {
        path: PathBuf,
        length: u64,
        limit: u64,
    },
    #[error("chunk index {path} is refused: {source}")]
    DecodeIndex {
        path: PathBuf,
        #[source]
        source: index::Error,
    },
}
