//! The reading side: rebuild an image from a bundle, verifying every chunk against the index
//! and the whole image against its sha256 (tests and offline installs use it), and read or
//! write index files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flipside_contract::index::{ChunkIndex, ChunkVerifier, Limits};
use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::Error;

/// Streams the image `index` describes out of `bundle` into `sink`, chunk by chunk, each
/// verified before it is written. The whole-image sha256 is checked at the end, so on
/// [`Error::ImageHash`] the sink holds verified chunks of an image that is not the one the
/// index names; use [`extract`] to get a file only when everything matched.
pub fn read_bundle(bundle: &Path, index: &ChunkIndex, sink: &mut dyn Write) -> Result<(), Error> {
    copy_verified(bundle, index, &mut |bytes| {
        sink.write_all(bytes)
            .map_err(|source| Error::WriteSink { source })
    })
}

/// Rebuilds the image into `out`, which appears only if every chunk and the whole image
/// verified.
pub fn extract(bundle: &Path, index: &ChunkIndex, out: &Path) -> Result<(), Error> {
    let mut file = AtomicFile::create(out)?;
    {
        let mut writer = BufWriter::with_capacity(1 << 20, file.file());
        let write_error = |source| Error::WriteOutput {
            path: out.to_path_buf(),
            source,
        };
        copy_verified(bundle, index, &mut |bytes| {
            writer.write_all(bytes).map_err(write_error)
        })?;
        writer.flush().map_err(write_error)?;
    }
    file.commit()
}

fn copy_verified(
    bundle: &Path,
    index: &ChunkIndex,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let path = bundle.to_path_buf();
    let file = File::open(bundle).map_err(|source| Error::OpenBundle {
        path: path.clone(),
        source,
    })?;
    let found = file
        .metadata()
        .map_err(|source| Error::ReadBundle {
            path: path.clone(),
            source,
        })?
        .len();
    if found != index.bundle_length() {
        return Err(Error::BundleLength {
            path,
            expected: index.bundle_length(),
            found,
        });
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut verifier = ChunkVerifier::for_index(index).map_err(|source| Error::DecodeIndex {
        path: path.clone(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let (mut frame, mut chunk) = (Vec::new(), Vec::new());
    for (n, entry) in index.iter().enumerate() {
        // Bounded: a validated index has frames of at most zstd's bound for 16 MiB.
        frame.resize(entry.frame_length as usize, 0);
        reader
            .read_exact(&mut frame)
            .map_err(|source| Error::ReadBundle {
                path: path.clone(),
                source,
            })?;
        verifier
            .verify_into(entry, &frame, &mut chunk)
            .map_err(|source| Error::Chunk {
                path: path.clone(),
                chunk: n,
                source,
            })?;
        hasher.update(&chunk);
        sink(&chunk)?;
    }
    let found = hasher.finalize();
    if found.as_slice() != index.image_sha256() {
        return Err(Error::ImageHash {
            path,
            expected: hex::encode(index.image_sha256()),
            found: hex::encode(found),
        });
    }
    Ok(())
}

/// Writes `index` to `path` atomically.
pub fn write_index(index: &ChunkIndex, path: &Path) -> Result<(), Error> {
    let mut file = AtomicFile::create(path)?;
    file.file()
        .write_all(&index.encode())
        .map_err(|source| Error::WriteOutput {
            path: path.to_path_buf(),
            source,
        })?;
    file.commit()
}

/// Reads and validates an index file; files longer than `limits` allow are refused unread.
pub fn read_index(path: &Path, limits: &Limits) -> Result<ChunkIndex, Error> {
    let read_error = |source| Error::ReadIndex {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let length = file.metadata().map_err(read_error)?.len();
    let limit = limits.max_index_length();
    if length > limit {
        return Err(Error::IndexTooLarge {
            path: path.to_path_buf(),
            length,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    ChunkIndex::decode(&bytes, limits).map_err(|source| Error::DecodeIndex {
        path: path.to_path_buf(),
        source,
    })
}
