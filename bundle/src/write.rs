//! The builder side: cut an image with FastCDC, compress every chunk as one zstd frame, write
//! the frames in image order and return the chunk index.
//!
//! One pass over the image, in batches of at most [`BATCH_BYTES`]: while the thread pool
//! compresses batch k, the calling thread reads, cuts and hashes batch k+1; then batch k is
//! written in order. Memory is about two batches plus their frames and one zstd context per
//! thread, whatever the image size. Each frame depends only on its chunk and the level, so the
//! output is identical for any thread count.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use fastcdc::v2020::{Normalization, StreamCDC};
use flipside_contract::index::{ChunkEntry, ChunkIndex, DELTA_AREA_HEADER, DELTA_AREA_MAGIC};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::delta::{self, Planner, Previous};
use crate::segment;
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
    write_bundle_with(image, bundle_out, params, &[], progress)
}

/// [`write_bundle_with_progress`], then delta frames for the chunks that devices running one
/// of the `previous` releases lack (see the `delta` module), in a skippable zstd frame after
/// the chunk frames.
pub fn write_bundle_with(
    image: &Path,
    bundle_out: &Path,
    params: &BundleParams,
    previous: &[Previous],
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
    let dictionary = pool.install(|| train(image, params))?;
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
                    || compress_batch(&batch, image_at, params.zstd_level, &dictionary),
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
    let needed = Planner::needed(&entries, previous);
    let mut made_deltas = Vec::new();
    if !previous.is_empty() && !needed.is_empty() {
        let planner =
            pool.install(|| Planner::new(image, &entries, previous, params.zstd_level))?;
        let area_start = frame_at;
        let mut writer = BufWriter::with_capacity(1 << 20, out.file());
        writer
            .write_all(&[0; DELTA_AREA_HEADER as usize])
            .map_err(write_error)?;
        let mut next = area_start + DELTA_AREA_HEADER;
        for batch in delta::batches(&needed) {
            let made = pool.install(|| planner.make(&entries, batch))?;
            made_deltas.extend(delta::records(&made, next));
            for m in &made {
                writer.write_all(&m.frame).map_err(write_error)?;
                next += m.frame.len() as u64;
            }
        }
        let area = next - area_start - DELTA_AREA_HEADER;
        writer.flush().map_err(write_error)?;
        drop(writer);
        let file = out.file();
        if made_deltas.is_empty() {
            file.set_len(area_start).map_err(write_error)?;
        } else {
            // The skippable frame's header, now that its length is known (the index refuses
            // an area over u32::MAX).
            let length = u32::try_from(area).unwrap_or(u32::MAX);
            let mut header = DELTA_AREA_MAGIC.to_le_bytes().to_vec();
            header.extend_from_slice(&length.to_le_bytes());
            file.seek(SeekFrom::Start(area_start))
                .map_err(write_error)?;
            file.write_all(&header).map_err(write_error)?;
        }
    }
    if image_at != expected_length {
        return Err(Error::ImageChanged {
            path: image.to_path_buf(),
            expected: expected_length,
            read: image_at,
        });
    }
    let segment_start = (made_deltas.last()).map_or(frame_at, |d| d.frame_range().end);
    let segments = if !params.segments {
        Vec::new()
    } else {
        let file = out.file();
        file.seek(SeekFrom::Start(segment_start))
            .map_err(write_error)?;
        pool.install(|| {
            segment::write(
                image,
                &entries,
                params.zstd_level,
                file,
                &out_path,
                segment_start,
            )
        })?
    };
    let build_error = |source| Error::BuildIndex {
        path: image.to_path_buf(),
        source,
    };
    let index = ChunkIndex::new(
        params.chunker,
        params.zstd_level,
        image_at,
        reader.hasher.finalize().into(),
        entries,
    )
    .and_then(|i| i.with_dictionary(dictionary))
    .and_then(|i| i.with_deltas(made_deltas))
    .and_then(|i| i.with_segments(segments))
    .map_err(build_error)?;
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
fn compress_batch(
    batch: &[Vec<u8>],
    first_offset: u64,
    level: i32,
    dictionary: &[u8],
) -> Result<Vec<Frame>, Error> {
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
            || compressor(level, dictionary),
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
/// before decompressing), no checksum (the index's sha256 covers the chunk), the index's
/// dictionary if any, without its id in the frames (the index names it).
pub(crate) fn compressor(
    level: i32,
    dictionary: &[u8],
) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::with_dictionary(level, dictionary)?;
    c.set_parameter(CParameter::ContentSizeFlag(true))?;
    c.set_parameter(CParameter::ChecksumFlag(false))?;
    c.set_parameter(CParameter::DictIdFlag(false))?;
    c.set_parameter(CParameter::NbWorkers(0))?;
    Ok(c)
}

/// Trains the dictionary of `params.dictionary_length` bytes (none when 0) on chunks sampled
/// evenly across the image: every k-th chunk, about 100 times the dictionary's size in all
/// (zstd's advice), so that memory stays bounded whatever the image size. Deterministic. An
/// image too small or too uniform to train on gets no dictionary.
fn train(image: &Path, params: &BundleParams) -> Result<Vec<u8>, Error> {
    let target = params.dictionary_length as usize;
    if target == 0 {
        return Ok(Vec::new());
    }
    let read_error = |source| Error::ReadImage {
        path: image.to_path_buf(),
        source,
    };
    let file = File::open(image).map_err(|source| Error::OpenImage {
        path: image.to_path_buf(),
        source,
    })?;
    let length = file.metadata().map_err(read_error)?.len();
    let budget = target.saturating_mul(100);
    let every = usize::try_from(length / budget as u64)
        .unwrap_or(usize::MAX)
        .max(1);
    let c = params.chunker;
    let (mut samples, mut sizes) = (Vec::with_capacity(budget), Vec::new());
    let chunks = StreamCDC::with_level(file, c.min, c.avg, c.max, Normalization::Level1);
    for (n, chunk) in chunks.enumerate() {
        let chunk = chunk.map_err(|e| read_error(e.into()))?;
        // A chunk is 1 KiB to 16 MiB; samples over 128 KiB only slow training down.
        if n % every == 0 && samples.len() < budget {
            let take = chunk.data.len().min(128 << 10);
            samples.extend_from_slice(&chunk.data[..take]);
            sizes.push(take);
        }
    }
    Ok(zstd::dict::from_continuous(&samples, &sizes, target).unwrap_or_default())
}
