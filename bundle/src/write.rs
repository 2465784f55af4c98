//! The builder side: cut an image with FastCDC, compress every chunk as one zstd frame, write
//! the frames in image order and return the chunk index.
//!
//! One pass over the image, in batches of at most [`BATCH_BYTES`]: while the thread pool
//! compresses batch k, the calling thread reads, cuts and hashes batch k+1; then batch k is
//! written in order. Memory is about two batches plus their frames and one zstd context per
//! thread, whatever the image size. Each frame depends only on its chunk and the level, so the
//! output is identical for any thread count.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use fastcdc::v2020::{Normalization, StreamCDC};
use flipside_contract::index::{ChunkEntry, ChunkIndex};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::{BundleParams, Error};

/// Uncompressed bytes cut and read ahead per batch.
pub const BATCH_BYTES: usize = 16 << 20;

/// Writes the bundle of `image` to `bundle_out` and returns its index; see
/// [`write_bundle_with_progress`].
pub fn write_bundle(
    image: &Path,
    bundle_out: &Path,
    params: &BundleParams,
) -> Result<ChunkIndex, Error> {
    write_bundle_with_progress(image, bundle_out, params, &mut |_| {})
}

/// Writes the bundle of `image` to `bundle_out` and returns its index. `progress` is called
/// with the number of image bytes done after each batch. `bundle_out` appears only once
/// complete and synced; on error nothing is left under that name or beside it.
pub fn write_bundle_with_progress(
    image: &Path,
    bundle_out: &Path,
    params: &BundleParams,
    progress: &mut dyn FnMut(u64),
) -> Result<ChunkIndex, Error> {
    params.validate()?;
    let threads = params.effective_threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("bundle-zstd-{i}"))
        .build()
        .map_err(|source| Error::ThreadPool { threads, source })?;
    let file = File::open(image).map_err(|source| Error::OpenImage {
        path: image.to_path_buf(),
        source,
    })?;
    let expected_length = file
        .metadata()
        .map_err(|source| Error::ReadImage {
            path: image.to_path_buf(),
            source,
        })?
        .len();
    if expected_length == 0 {
        return Err(Error::EmptyImage {
            path: image.to_path_buf(),
        });
    }
    let c = params.chunker;
    let mut reader = BatchReader {
        chunks: StreamCDC::with_level(file, c.min, c.avg, c.max, Normalization::Level1),
        hasher: Sha256::new(),
        path: image,
    };
    let mut out = AtomicFile::create(bundle_out)?;
    let out_path = out.path().to_path_buf();
    let write_error = |source| Error::WriteOutput {
        path: out_path.clone(),
        source,
    };

    let mut entries = Vec::new();
    let (mut image_at, mut frame_at) = (0u64, 0u64);
    {
        let mut writer = BufWriter::with_capacity(1 << 20, out.file());
        let mut batch = reader.next_batch()?;
        while !batch.is_empty() {
            let (frames, next) = pool.install(|| {
                rayon::join(
                    || compress_batch(&batch, image_at, params.zstd_level),
                    || reader.next_batch(),
                )
            });
            for (chunk, frame) in batch.iter().zip(frames?) {
                writer.write_all(&frame.bytes).map_err(write_error)?;
                entries.push(ChunkEntry {
                    image_offset: image_at,
                    length: chunk.len() as u64,
                    frame_offset: frame_at,
                    frame_length: frame.bytes.len() as u64,
                    sha256: frame.sha256,
                });
                image_at += chunk.len() as u64;
                frame_at += frame.bytes.len() as u64;
            }
            progress(image_at);
            batch = next?;
        }
        writer.flush().map_err(write_error)?;
    }
    if image_at != expected_length {
        return Err(Error::ImageChanged {
            path: image.to_path_buf(),
            expected: expected_length,
            read: image_at,
        });
    }
    let index = ChunkIndex::new(
        params.chunker,
        params.zstd_level,
        image_at,
        reader.hasher.finalize().into(),
        entries,
    )
    .map_err(|source| Error::BuildIndex {
        path: image.to_path_buf(),
        source,
    })?;
    out.commit()?;
    Ok(index)
}

/// Cuts the image into chunks and hashes the whole image as it goes.
struct BatchReader<'a> {
    chunks: StreamCDC<File>,
    hasher: Sha256,
    path: &'a Path,
}

impl BatchReader<'_> {
    /// The next chunks, up to [`BATCH_BYTES`] in all; empty at the end of the image.
    fn next_batch(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            match self.chunks.next() {
                None => break,
                Some(Err(e)) => {
                    return Err(Error::ReadImage {
                        path: self.path.to_path_buf(),
                        source: e.into(),
                    })
                }
                Some(Ok(chunk)) => {
                    self.hasher.update(&chunk.data);
                    bytes += chunk.data.len();
                    batch.push(chunk.data);
                }
            }
        }
        Ok(batch)
    }
}

struct Frame {
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

/// Compresses the chunks in parallel; the result is in batch order.
fn compress_batch(batch: &[Vec<u8>], first_offset: u64, level: i32) -> Result<Vec<Frame>, Error> {
    let offsets: Vec<u64> = batch
        .iter()
        .scan(first_offset, |at, chunk| {
            let offset = *at;
            *at += chunk.len() as u64;
            Some(offset)
        })
        .collect();
    batch
        .par_iter()
        .zip(offsets)
        .map_init(
            || compressor(level),
            |compressor, (chunk, offset)| {
                let compress_error = |source| Error::Compress { offset, source };
                let compressor = compressor
                    .as_mut()
                    .map_err(|e| compress_error(std::io::Error::new(e.kind(), e.to_string())))?;
                let bytes = compressor.compress(chunk).map_err(compress_error)?;
                Ok(Frame {
                    bytes,
                    sha256: Sha256::digest(chunk).into(),
                })
            },
        )
        .collect()
}

/// A zstd context with every frame parameter set explicitly, so that a change of the zstd
/// crate's defaults cannot change the format: content size in the header (readers check it
/// before decompressing), no checksum (the index's sha256 covers the chunk), no dictionary.
fn compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(CParameter::ContentSizeFlag(true))?;
    c.set_parameter(CParameter::ChecksumFlag(false))?;
    c.set_parameter(CParameter::DictIdFlag(false))?;
    c.set_parameter(CParameter::NbWorkers(0))?;
    Ok(c)
}
