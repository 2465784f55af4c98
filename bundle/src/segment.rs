//! Segments: the image compressed a second time as a few large zstd frames, each covering
//! whole consecutive chunks, for devices that download every chunk of a run (a full install).
//! A 64 KiB chunk frame starts with an empty window and its own entropy tables; a 16 MiB
//! segment does not pay that for every chunk, so it is smaller and decodes faster. Each
//! segment's frame sits in its own skippable frame, so `zstd -d < bundle` still gives the image
//! once. Segments are compressed in parallel, a few at a time to bound memory, from the image
//! file by offset; each depends only on its bytes and the level, so the output is
//! deterministic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use flipside_contract::index::{
    ChunkEntry, SegmentEntry, SEGMENT_HEADER, SEGMENT_MAGIC, SEGMENT_WINDOW_LOG,
};
use rayon::prelude::*;

use crate::Error;

/// Image bytes a segment covers at least (but its last): large enough that the window and the
/// entropy tables are paid rarely, small enough to resume and to bound the builder's memory.
pub const SEGMENT_TARGET: u64 = 16 << 20;

/// Most segments held (input and frame) at once, whatever the thread count.
const IN_FLIGHT: usize = 4;

/// The chunk runs of each segment: consecutive chunks until at least [`SEGMENT_TARGET`] bytes.
pub fn plan(entries: &[ChunkEntry]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let (mut first, mut bytes) = (0, 0u64);
    for (k, e) in entries.iter().enumerate() {
        bytes += e.length;
        if bytes >= SEGMENT_TARGET || k + 1 == entries.len() {
            runs.push((first, k + 1 - first));
            first = k + 1;
            bytes = 0;
        }
    }
    runs
}

/// Compresses the segments of `entries` from `image` and appends them to `out` (the file at
/// `out_path`), which ends at bundle offset `area_start`; returns their records.
pub fn write(
    image: &Path,
    entries: &[ChunkEntry],
    level: i32,
    out: &mut dyn Write,
    out_path: &Path,
    area_start: u64,
) -> Result<Vec<SegmentEntry>, Error> {
    let write_error = |source| Error::WriteOutput {
        path: out_path.to_path_buf(),
        source,
    };
    let file = File::open(image).map_err(|source| Error::OpenImage {
        path: image.to_path_buf(),
        source,
    })?;
    let runs = plan(entries);
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut records = Vec::with_capacity(runs.len());
    let mut at = area_start;
    for group in runs.chunks(IN_FLIGHT) {
        let frames: Result<Vec<Vec<u8>>, Error> = group
            .par_iter()
            .map(|&(first, count)| compress(&file, image, &entries[first..first + count], level))
            .collect();
        for (&(first, count), frame) in group.iter().zip(frames?) {
            // The index refuses segments over 64 MiB, whose frames fit in a u32.
            let length = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            out.write_all(&SEGMENT_MAGIC.to_le_bytes())
                .and_then(|()| out.write_all(&length.to_le_bytes()))
                .and_then(|()| out.write_all(&frame))
                .map_err(write_error)?;
            records.push(SegmentEntry {
                first_chunk: first as u64,
                chunks: count as u64,
                frame_offset: at + SEGMENT_HEADER,
                frame_length: frame.len() as u64,
            });
            at += SEGMENT_HEADER + frame.len() as u64;
        }
    }
    out.flush().map_err(write_error)?;
    Ok(records)
}

/// One segment's frame: its chunks' bytes read from the image and compressed as one frame with
/// the chunk frames' settings, its window bounded by [`SEGMENT_WINDOW_LOG`] (a device's
/// decoding memory).
fn compress(
    file: &File,
    image: &Path,
    chunks: &[ChunkEntry],
    level: i32,
) -> Result<Vec<u8>, Error> {
    use zstd::zstd_safe::CParameter;
    let start = chunks.first().map_or(0, |e| e.image_offset);
    let end = chunks.last().map_or(0, |e| e.image_range().end);
    let mut bytes = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut bytes, start)
        .map_err(|source| Error::ReadImage {
            path: image.to_path_buf(),
            source,
        })?;
    let compress_error = |source| Error::Compress {
        offset: start,
        source,
    };
    let mut c = crate::write::compressor(level, &[]).map_err(compress_error)?;
    c.set_parameter(CParameter::WindowLog(SEGMENT_WINDOW_LOG))
        .map_err(compress_error)?;
    c.compress(&bytes).map_err(compress_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lengths: &[u64]) -> Vec<ChunkEntry> {
        let mut at = 0;
        lengths
            .iter()
            .map(|&length| {
                let e = ChunkEntry {
                    image_offset: at,
                    length,
                    frame_offset: at,
                    frame_length: length,
                    sha256: [0; 32],
                };
                at += length;
                e
            })
            .collect()
    }

    #[test]
    fn segments_cover_every_chunk_once_and_reach_the_target_but_the_last() {
        let mib = 1 << 20;
        assert_eq!(plan(&entries(&[])), vec![]);
        assert_eq!(plan(&entries(&[5])), vec![(0, 1)]);
        assert_eq!(
            plan(&entries(&[8 * mib, 8 * mib, mib])),
            vec![(0, 2), (2, 1)]
        );
        assert_eq!(
            plan(&entries(&[15 * mib, 2 * mib, 16 * mib])),
            vec![(0, 2), (2, 1)]
        );
        let many = entries(&vec![64 << 10; 1000]);
        let runs = plan(&many);
        assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), 1000);
        assert!(runs.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert!(runs[..runs.len() - 1].iter().all(|r| r.1 == 256));
    }
}
