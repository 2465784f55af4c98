//! Delta frames: each chunk of the new image that a device running a previous release would
//! have to download is compressed once more with a similar part of that release as zstd's
//! reference prefix, and offered beside its full frame when that is smaller.
//!
//! The base is found by resemblance, not position: every chunk of the previous image that the
//! new image no longer has (the changed material) is sampled for content-defined features (a
//! gear hash at the positions where its top bits are zero, about one per 512 bytes); a new
//! chunk takes the old chunk that shares most of its features, with the old chunks on either
//! side of it: chunk boundaries move when content changes, so a new chunk often spans parts
//! of its old neighbours too (measured on the benchmark's releases, the neighbours make the
//! delta frames 16-27% smaller). The base is at most [`MAX_BASE`] bytes, which with the
//! chunk bounds what a device holds to decode a delta. Memory is the features of the changed
//! material (12 bytes per 512), not the images: chunks are read when compressed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flipside_contract::index::{ChunkEntry, ChunkIndex, DeltaEntry, MAX_DELTAS_PER_CHUNK};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;

/// A previous release: its image (the bytes a device's running slot holds) and its index.
#[derive(Debug, Clone)]
pub struct Previous {
    pub image: PathBuf,
    pub index: ChunkIndex,
}

/// Chunks compressed per parallel batch: bounds the delta frames held before they are written.
const BATCH_CHUNKS: usize = 256;
/// A delta must save at least this many bytes over the full frame (its record costs 64).
const MIN_SAVING: u64 = 128;
/// Largest base: the matched old chunk and its neighbours are used while they fit (three
/// chunks of the default chunker's 256 KiB maximum do). Devices accept bases up to their
/// chunk limit (4 MiB by default).
pub(crate) const MAX_BASE: u64 = 1 << 20;
/// Delta frames are few (only the changed chunks), so they get zstd's strongest regular
/// level whatever the bundle's: level 19 makes them 2-5% smaller than 16 on the benchmark's
/// releases, for a few seconds of build time.
const DELTA_LEVEL: i32 = 19;

/// The base of a delta: consecutive chunks of a previous image, named as the index names it
/// (the first chunk's sha256 and the length of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Base {
    first_sha256: [u8; 32],
    image_offset: u64,
    length: u64,
}

/// A delta frame made for chunk `chunk`, against `base`.
pub(crate) struct Made {
    pub(crate) chunk: usize,
    pub(crate) base: Base,
    pub(crate) frame: Vec<u8>,
}

/// What the deltas of one new image need from the previous releases.
pub(crate) struct Planner<'a> {
    image: File,
    image_path: &'a Path,
    previous: Vec<Sources<'a>>,
    level: i32,
}

/// One previous release: its image and the features of its changed chunks.
struct Sources<'a> {
    image: File,
    path: &'a Path,
    entries: &'a [ChunkEntry],
    /// Position of the first chunk of each sha256: where a device looks a base up.
    first: HashMap<[u8; 32], usize>,
    /// The old chunks the new image does not have, by position in `entries`.
    candidates: Vec<usize>,
    /// Feature -> candidate number (the first chunk that has it).
    features: HashMap<u64, u32>,
}

impl<'a> Planner<'a> {
    /// Samples the changed chunks of every previous release (at most
    /// [`MAX_DELTAS_PER_CHUNK`] are used).
    pub(crate) fn new(
        image_path: &'a Path,
        new: &[ChunkEntry],
        previous: &'a [Previous],
        level: i32,
    ) -> Result<Self, Error> {
        let level = level.max(DELTA_LEVEL);
        let image = open(image_path)?;
        let present: HashSet<([u8; 32], u64)> = new.iter().map(|e| (e.sha256, e.length)).collect();
        let previous = previous
            .iter()
            .take(MAX_DELTAS_PER_CHUNK)
            .map(|p| Sources::sample(p, &present))
            .collect::<Result<_, _>>()?;
        Ok(Planner {
            image,
            image_path,
            previous,
            level,
        })
    }

    /// The delta frames of the chunks `numbers` (in order), in index order: per chunk, one per
    /// previous release that has a resembling chunk, when smaller than the full frame.
    pub(crate) fn make(&self, new: &[ChunkEntry], numbers: &[usize]) -> Result<Vec<Made>, Error> {
        let made: Vec<Vec<Made>> = numbers
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(chunk, base), &n| self.for_chunk(&new[n], n, chunk, base),
            )
            .collect::<Result<_, _>>()?;
        Ok(made.into_iter().flatten().collect())
    }

    fn for_chunk(
        &self,
        entry: &ChunkEntry,
        n: usize,
        chunk: &mut Vec<u8>,
        base: &mut Vec<u8>,
    ) -> Result<Vec<Made>, Error> {
        read_chunk(&self.image, self.image_path, entry, chunk)?;
        let wanted = features(chunk);
        let mut made: Vec<Made> = Vec::new();
        for p in &self.previous {
            let Some(old) = p.best(&wanted).map(|k| p.base_around(k)) else {
                continue;
            };
            if made.iter().any(|m| m.base == old) {
                continue;
            }
            p.read_base(&old, base)?;
            let frame = compress_against(chunk, base, self.level, entry.image_offset)?;
            if (frame.len() as u64).saturating_add(MIN_SAVING) <= entry.frame_length {
                made.push(Made {
                    chunk: n,
                    base: old,
                    frame,
                });
            }
        }
        Ok(made)
    }

    /// The chunks a device running any previous release would download: those none of them
    /// has.
    pub(crate) fn needed(new: &[ChunkEntry], previous: &[Previous]) -> Vec<usize> {
        let held: HashSet<([u8; 32], u64)> = (previous.iter())
            .flat_map(|p| p.index.iter().map(|e| (e.sha256, e.length)))
            .collect();
        (new.iter().enumerate())
            .filter(|(_, e)| !held.contains(&(e.sha256, e.length)))
            .map(|(n, _)| n)
            .collect()
    }
}

/// The batches `needed` is made in.
pub(crate) fn batches(needed: &[usize]) -> std::slice::Chunks<'_, usize> {
    needed.chunks(BATCH_CHUNKS)
}

impl<'a> Sources<'a> {
    fn sample(p: &'a Previous, present: &HashSet<([u8; 32], u64)>) -> Result<Self, Error> {
        let image = open(&p.image)?;
        let entries = p.index.entries();
        let candidates: Vec<usize> = (0..entries.len())
            .filter(|&k| !present.contains(&(entries[k].sha256, entries[k].length)))
            .collect();
        let sampled: Vec<Vec<u64>> = candidates
            .par_iter()
            .map_init(Vec::new, |buf, &k| {
                read_chunk(&image, &p.image, &entries[k], buf).map(|()| features(buf))
            })
            .collect::<Result<_, _>>()?;
        let mut first = HashMap::new();
        for (k, e) in entries.iter().enumerate() {
            first.entry(e.sha256).or_insert(k);
        }
        let mut features = HashMap::new();
        for (k, f) in sampled.iter().enumerate() {
            for &h in f {
                features.entry(h).or_insert(k as u32);
            }
        }
        Ok(Sources {
            image,
            path: &p.image,
            entries,
            first,
            candidates,
            features,
        })
    }

    /// The base around old chunk `k`: from its left neighbour to its right one, as far as
    /// [`MAX_BASE`] allows. A device finds a base by its first chunk's sha256 (the first chunk
    /// with it), so the run starts at `k - 1` or `k`, whichever is the first of its content;
    /// when neither is, the run from where `k`'s content first appears is used (the same
    /// bytes a device reads, so the delta stays correct; it is only tried).
    fn base_around(&self, k: usize) -> Base {
        let starts = [k.checked_sub(1), Some(k)];
        let first_of = |s: usize| self.first[&self.entries[s].sha256];
        let (start, last) = match (starts.into_iter().flatten()).find(|&s| first_of(s) == s) {
            Some(s) => (s, k + 1),
            None => (first_of(k), first_of(k)),
        };
        let (mut end, mut length) = (start, self.entries[start].length);
        while end < last {
            match self.entries.get(end + 1) {
                Some(e) if length + e.length <= MAX_BASE => {
                    length += e.length;
                    end += 1;
                }
                _ => break,
            }
        }
        Base {
            first_sha256: self.entries[start].sha256,
            image_offset: self.entries[start].image_offset,
            length,
        }
    }

    /// Reads `base` into `buf`, each of its chunks checked like [`read_chunk`] does.
    fn read_base(&self, base: &Base, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.resize(base.length as usize, 0);
        (self.image.read_exact_at(buf, base.image_offset)).map_err(|source| Error::ReadImage {
            path: self.path.to_path_buf(),
            source,
        })?;
        let start = self.first[&base.first_sha256];
        let mut at = 0usize;
        for e in &self.entries[start..] {
            if at as u64 >= base.length {
                break;
            }
            let piece = &buf[at..at + e.length as usize];
            if Sha256::digest(piece).as_slice() != e.sha256 {
                return Err(Error::PreviousMismatch {
                    path: self.path.to_path_buf(),
                    offset: e.image_offset,
                });
            }
            at += e.length as usize;
        }
        Ok(())
    }

    /// The changed old chunk that shares most features with `wanted` (ties: the first), if
    /// any shares at least two: its position in `entries`.
    fn best(&self, wanted: &[u64]) -> Option<usize> {
        let mut votes: HashMap<u32, u32> = HashMap::new();
        for h in wanted {
            if let Some(&k) = self.features.get(h) {
                *votes.entry(k).or_default() += 1;
            }
        }
        let (k, n) = votes
            .into_iter()
            .max_by_key(|&(k, n)| (n, std::cmp::Reverse(k)))?;
        (n >= 2).then(|| self.candidates[k as usize])
    }
}

/// The delta records of `made` (in index order), their frames laid out from `first_offset`.
pub(crate) fn records(made: &[Made], first_offset: u64) -> Vec<DeltaEntry> {
    let mut at = first_offset;
    made.iter()
        .map(|m| {
            let d = DeltaEntry {
                chunk: m.chunk as u64,
                base_length: m.base.length,
                base_sha256: m.base.first_sha256,
                frame_offset: at,
                frame_length: m.frame.len() as u64,
            };
            at += d.frame_length;
            d
        })
        .collect()
}

fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|source| Error::OpenImage {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads chunk `e` of the image `file` into `buf`, and checks it is that chunk: a previous
/// image that does not match its index would make deltas no device can use.
fn read_chunk(file: &File, path: &Path, e: &ChunkEntry, buf: &mut Vec<u8>) -> Result<(), Error> {
    buf.resize(e.length as usize, 0);
    (file.read_exact_at(buf, e.image_offset)).map_err(|source| Error::ReadImage {
        path: path.to_path_buf(),
        source,
    })?;
    if Sha256::digest(buf.as_slice()).as_slice() != e.sha256 {
        return Err(Error::PreviousMismatch {
            path: path.to_path_buf(),
            offset: e.image_offset,
        });
    }
    Ok(())
}

/// One zstd frame of `chunk` with `base` as reference prefix, every frame parameter explicit
/// like the chunk frames'.
fn compress_against(chunk: &[u8], base: &[u8], level: i32, offset: u64) -> Result<Vec<u8>, Error> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let fail = |what: &str| Error::Compress {
        offset,
        source: std::io::Error::other(format!("zstd: {what}")),
    };
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
        CParameter::NbWorkers(0),
    ] {
        cctx.set_parameter(p)
            .map_err(|c| fail(zstd::zstd_safe::get_error_name(c)))?;
    }
    cctx.ref_prefix(base)
        .map_err(|c| fail(zstd::zstd_safe::get_error_name(c)))?;
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(chunk.len()));
    cctx.compress2(&mut frame, chunk)
        .map_err(|c| fail(zstd::zstd_safe::get_error_name(c)))?;
    Ok(frame)
}

/// Content-defined samples of `data`: the gear hash (a 64-byte window) wherever its top nine
/// bits are zero. Public for `examples/delta_bench.rs`, which studies base choices.
pub fn features(data: &[u8]) -> Vec<u64> {
    let mut h = 0u64;
    let mut out = Vec::with_capacity(data.len() / 256);
    for &b in data {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
        if h >> 55 == 0 {
            out.push(h);
        }
    }
    out
}

/// 256 fixed pseudo-random words (splitmix64 from 0): the features must not change between
/// builds.
static GEAR: [u64; 256] = gear();

const fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = 0u64;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_depend_on_content_not_position() {
        let mut rng = fastrand::Rng::with_seed(9);
        let data: Vec<u8> = (0..200_000).map(|_| rng.u8(..)).collect();
        let f = features(&data);
        // About one per 512 bytes.
        assert!((200..700).contains(&f.len()), "{}", f.len());
        // The same bytes shifted by an insertion keep (nearly) all their features.
        let mut shifted = vec![1u8; 999];
        shifted.extend_from_slice(&data);
        let g: HashSet<u64> = features(&shifted).into_iter().collect();
        let kept = f.iter().filter(|h| g.contains(h)).count();
        assert!(kept + 2 >= f.len(), "{kept} of {}", f.len());
        assert_eq!(GEAR[0], gear()[0]);
        assert_ne!(GEAR[0], GEAR[1]);
    }
}
