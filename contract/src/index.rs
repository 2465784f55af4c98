//! The bundle's chunk index: which byte range of the image each zstd frame of the bundle holds,
//! and the sha256 a device checks every chunk against before writing it to a slot.
//!
//! The binary layout, the validation rules and the compatibility policy are documented byte by
//! byte in `docs/bundle-format.md`; this module is their single implementation. Everything here
//! is pure: [`ChunkIndex::decode`] and [`verify_chunk`] take bytes and never read files, so the
//! device and the builder share them and they are tested without a disk.

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};

use sha2::{Digest, Sha256};
use zstd::zstd_safe;

/// First 8 bytes of every index file.
pub const MAGIC: [u8; 8] = *b"FLIPIDX\0";
/// Newest format version this build reads and writes; readers refuse versions they do not know.
/// The builder writes version 1 when the bundle has neither a dictionary nor delta frames.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes before the first chunk record in format 1.
pub const HEADER_LENGTH: usize = 96;
/// Bytes before the first chunk record in format 2: format 1's header, the delta count, the
/// dictionary length and the segment count.
pub const HEADER_V2_LENGTH: usize = 120;
/// Bytes of one chunk record, and of one delta record.
pub const RECORD_LENGTH: usize = 64;
/// Most delta frames offered for one chunk (one per previous release the builder was given).
pub const MAX_DELTAS_PER_CHUNK: usize = 4;
/// The skippable zstd frame that holds the delta frames after the chunks' frames, so that
/// `zstd -d` still rebuilds the image from a bundle with deltas (it skips that frame).
pub const DELTA_AREA_MAGIC: u32 = 0x184D_2A5D;
/// Bytes of the skippable frame's header (magic, then the u32 length of what follows).
pub const DELTA_AREA_HEADER: u64 = 8;
/// Bytes of one segment record.
pub const SEGMENT_RECORD_LENGTH: usize = 32;
/// The skippable zstd frame that wraps each segment's frame, after the delta area.
pub const SEGMENT_MAGIC: u32 = 0x184D_2A5E;
/// Bytes of a segment's skippable frame header (magic, then the u32 length of the frame).
pub const SEGMENT_HEADER: u64 = 8;
/// Largest window (log2 bytes) a segment's frame may need: the memory a device decodes it
/// with, 2 MiB.
pub const SEGMENT_WINDOW_LOG: u32 = 21;
/// Largest image range one segment covers: a reader decodes it as a stream and never holds it,
/// but its frame must fit a skippable frame's u32 length.
pub const MAX_SEGMENT_LENGTH: u64 = 64 << 20;
/// First bytes of a zstd dictionary (`ZSTD_MAGIC_DICTIONARY`, little-endian).
pub const DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xa4, 0x30, 0xec];
/// Chunker id: FastCDC 2020 with normalisation level 1 and the unseeded gear table.
pub const CHUNKER_FASTCDC_2020: u32 = 1;
/// Compression id: each chunk is exactly one zstd frame.
pub const COMPRESSION_ZSTD: u32 = 1;

/// Minimum chunk sizes FastCDC 2020 accepts.
pub const CHUNK_MIN_RANGE: RangeInclusive<u32> = 64..=1_048_576;
/// Average chunk sizes FastCDC 2020 accepts.
pub const CHUNK_AVG_RANGE: RangeInclusive<u32> = 256..=4_194_304;
/// Maximum chunk sizes FastCDC 2020 accepts.
pub const CHUNK_MAX_RANGE: RangeInclusive<u32> = 1024..=16_777_216;

/// Failure to accept an index or a chunk.
///
/// Index variants mean the index file is corrupt, truncated, from a newer builder, or beyond
/// what this device accepts; chunk variants mean the bundle bytes do not match the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("chunk index is {length} bytes, shorter than its {needed}-byte header: the file is truncated; fetch it again")]
    TruncatedHeader { length: usize, needed: usize },
    // The bytes found are kept for callers but never shown: a path that points at another
    // file must not have its first bytes printed in a log.
    #[error("not a chunk index: it does not start with the index magic {MAGIC:02x?}; check that the index target, not the bundle, was given")]
    BadMagic { found: [u8; 8] },
    #[error("chunk index format {found} is not supported (this build reads formats 1 to {FORMAT_VERSION}); upgrade flipside")]
    UnsupportedVersion { found: u32 },
    #[error("chunk index records are {found} bytes, the format has {RECORD_LENGTH}-byte records: the index is corrupt")]
    BadRecordLength { found: u32 },
    #[error("chunker id {found} is not supported (this build knows {CHUNKER_FASTCDC_2020} = FastCDC 2020); upgrade flipside")]
    UnsupportedChunker { found: u32 },
    #[error("chunker sizes min {min} / avg {avg} / max {max} are invalid: {why}")]
    InvalidChunker {
        min: u32,
        avg: u32,
        max: u32,
        why: &'static str,
    },
    #[error("compression id {found} is not supported (this build knows {COMPRESSION_ZSTD} = zstd); upgrade flipside")]
    UnsupportedCompression { found: u32 },
    #[error("chunks of up to {max} bytes exceed this reader's limit of {limit}: rebuild the bundle with a smaller chunker maximum or raise the limit")]
    ChunkerOverLimit { max: u32, limit: u32 },
    #[error("the image is {length} bytes, over this reader's limit of {limit} (the slot size?): build a smaller image")]
    ImageOverLimit { length: u64, limit: u64 },
    #[error("the index lists {count} chunks, over this reader's limit of {limit}")]
    TooManyChunks { count: u64, limit: u64 },
    #[error("the index declares {count} chunks, which need {needed} bytes, but it has {length}: the file is truncated; fetch it again")]
    TruncatedRecords {
        count: u64,
        needed: u64,
        length: usize,
    },
    #[error("the index has {extra} bytes after its {count} chunk records: the file is corrupt")]
    TrailingBytes { count: u64, extra: u64 },
    #[error("the index is format 2 but has neither a dictionary nor delta frames, which format 1 writes: the index is corrupt")]
    NeedlessVersion,
    #[error("the index lists {count} delta frames, over this reader's limit of {limit}")]
    TooManyDeltas { count: u64, limit: u64 },
    #[error("the index's zstd dictionary is {length} bytes, over this reader's limit of {limit}")]
    DictionaryOverLimit { length: u64, limit: u64 },
    #[error("the index's zstd dictionary is refused: {why}; rebuild the bundle")]
    BadDictionary { why: &'static str },
    #[error("delta {delta} is for chunk {chunk}, but the index has {count} chunks")]
    DeltaChunk { delta: u64, chunk: u64, count: u64 },
    #[error("delta {delta} is for chunk {chunk}, after a delta for chunk {previous}: deltas must be in chunk order")]
    DeltaOrder {
        delta: u64,
        chunk: u64,
        previous: u64,
    },
    #[error("chunk {chunk} has more than {MAX_DELTAS_PER_CHUNK} delta frames")]
    TooManyAlternatives { chunk: u64 },
    #[error("delta {delta} names a {length}-byte base chunk, outside 1..={max} (this reader's chunk limit)")]
    DeltaBaseLength { delta: u64, length: u64, max: u64 },
    #[error("delta {delta}'s frame starts at bundle offset {found}, expected {expected}: delta frames must be contiguous after the delta area's header")]
    DeltaFrameNotContiguous {
        delta: u64,
        expected: u64,
        found: u64,
    },
    #[error("delta {delta}'s frame is {length} bytes, outside 1..={max} (zstd's worst case for its chunk)")]
    DeltaFrameLength { delta: u64, length: u64, max: u64 },
    #[error("the delta frames add up to {length} bytes, more than one skippable zstd frame holds ({max})")]
    DeltaAreaTooLarge { length: u64, max: u64 },
    #[error("segment {segment} starts at chunk {found}, expected {expected}: segments must cover the chunks in order, each at least one; rebuild the bundle")]
    SegmentNotContiguous {
        segment: u64,
        expected: u64,
        found: u64,
    },
    #[error("the segments cover {covered} of the {count} chunks: they must cover all or be absent; rebuild the bundle")]
    SegmentCoverage { covered: u64, count: u64 },
    #[error("segment {segment} covers {length} image bytes, more than {max}; rebuild the bundle")]
    SegmentLength { segment: u64, length: u64, max: u64 },
    #[error("segment {segment}'s frame starts at bundle offset {found}, expected {expected} (after its skippable header); rebuild the bundle")]
    SegmentFrameNotContiguous {
        segment: u64,
        expected: u64,
        found: u64,
    },
    #[error("segment {segment}'s frame is {length} bytes, outside 1 to {max}; rebuild the bundle")]
    SegmentFrameLength { segment: u64, length: u64, max: u64 },
    #[error("chunk {chunk} starts at image offset {found}, expected {expected}: chunks must be contiguous in image order")]
    ChunkNotContiguous {
        chunk: u64,
        expected: u64,
        found: u64,
    },
    #[error("chunk {chunk} is {length} bytes, outside 1..={max} (the chunker maximum)")]
    ChunkLength { chunk: u64, length: u64, max: u64 },
    #[error("chunk {chunk} ends at {end}, past the image length {image_length}")]
    ChunkBeyondImage {
        chunk: u64,
        end: u64,
        image_length: u64,
    },
    #[error("frame of chunk {chunk} starts at bundle offset {found}, expected {expected}: frames must be contiguous from 0")]
    FrameNotContiguous {
        chunk: u64,
        expected: u64,
        found: u64,
    },
    #[error("frame of chunk {chunk} is {length} bytes, outside 1..={max} (zstd's worst case for the chunk)")]
    FrameLength { chunk: u64, length: u64, max: u64 },
    #[error("the index describes an empty image: an image has at least one byte")]
    EmptyImage,
    #[error(
        "the chunks cover {covered} bytes but the image is {image_length}: the index is corrupt"
    )]
    Coverage { covered: u64, image_length: u64 },
    #[error("the header declares a {declared}-byte bundle but the frames add up to {derived}: the index is corrupt")]
    BundleLength { declared: u64, derived: u64 },
    #[error("the entry at image offset {offset} claims a {length}-byte chunk, outside the format's 1 B to 16 MiB: it did not come from a validated index")]
    EntryLength { offset: u64, length: u64 },
    #[error("frame of the chunk at image offset {offset} is {found} bytes, the index says {expected}: the bundle or the range request is wrong")]
    FrameSize {
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error("frame of the chunk at image offset {offset} is not exactly one zstd frame: {reason}")]
    NotOneFrame { offset: u64, reason: &'static str },
    #[error("frame of the chunk at image offset {offset} declares {declared} bytes, the index says {expected}")]
    ContentSize {
        offset: u64,
        declared: u64,
        expected: u64,
    },
    #[error("frame of the chunk at image offset {offset} does not decompress: {reason}")]
    Decompress { offset: u64, reason: &'static str },
    #[error(
        "chunk at image offset {offset} decompresses to {found} bytes, the index says {expected}"
    )]
    ChunkSize {
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error("chunk at image offset {offset} has sha256 {found}, the index says {expected}: the bundle is corrupt; fetch the chunk again")]
    ChunkHash {
        offset: u64,
        expected: String,
        found: String,
    },
    #[error("the base of the delta for the chunk at image offset {offset} is not the chunk the index names: the running slot does not hold it; fetch the full frame")]
    DeltaBase { offset: u64 },
}

/// FastCDC sizes the bundle was cut with (bytes). Boundaries depend on content, so an insertion
/// changes only the chunks around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 16/64/256 KiB, as desync and casync use: small enough that a changed file costs about one
    /// chunk, large enough that the index stays near 0.1% of the image.
    fn default() -> Self {
        ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the sizes against FastCDC 2020's ranges and `min <= avg <= max`.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why| {
            Err(Error::InvalidChunker {
                min: self.min,
                avg: self.avg,
                max: self.max,
                why,
            })
        };
        if !CHUNK_MIN_RANGE.contains(&self.min) {
            return bad("min must be 64 B to 1 MiB");
        }
        if !CHUNK_AVG_RANGE.contains(&self.avg) {
            return bad("avg must be 256 B to 4 MiB");
        }
        if !CHUNK_MAX_RANGE.contains(&self.max) {
            return bad("max must be 1 KiB to 16 MiB");
        }
        if !(self.min <= self.avg && self.avg <= self.max) {
            return bad("sizes must satisfy min <= avg <= max");
        }
        Ok(())
    }
}

/// What a reader accepts, beyond the format itself. A device sets these from its slot size and
/// memory; [`ChunkIndex::decode`] checks them before it trusts any count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest image an index may describe. Default 64 GiB; a device passes its slot size.
    pub max_image_length: u64,
    /// Largest chunker maximum accepted: a reader needs one buffer of this size for a chunk and
    /// one of [`max_frame_length`] of it for a frame. Default 4 MiB.
    pub max_chunk_length: u32,
    /// Most chunk records accepted. Default 2^22 (a 256 MiB index).
    pub max_chunks: u64,
    /// Most delta records accepted. Default 2^22, like the chunks.
    pub max_deltas: u64,
    /// Largest zstd dictionary accepted (a reader holds it while it installs). Default 1 MiB,
    /// about ten times what the builder trains.
    pub max_dictionary_length: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_length: 64 << 30,
            max_chunk_length: 4 << 20,
            max_chunks: 1 << 22,
            max_deltas: 1 << 22,
            max_dictionary_length: 1 << 20,
        }
    }
}

impl Limits {
    /// Only the format's own rules: what [`ChunkIndex::new`] applies.
    pub const FORMAT: Limits = Limits {
        max_image_length: u64::MAX,
        max_chunk_length: *CHUNK_MAX_RANGE.end(),
        max_chunks: u64::MAX,
        max_deltas: u64::MAX,
        max_dictionary_length: u64::MAX,
    };

    /// The longest index file these limits can accept: a reader refuses a longer one unread.
    pub fn max_index_length(&self) -> u64 {
        let records = |n: u64| n.saturating_mul(RECORD_LENGTH as u64);
        (HEADER_V2_LENGTH as u64)
            .saturating_add(records(self.max_chunks))
            .saturating_add(records(self.max_deltas))
            .saturating_add(self.max_chunks.saturating_mul(SEGMENT_RECORD_LENGTH as u64))
            .saturating_add(self.max_dictionary_length)
    }
}

/// zstd's worst-case frame size for `length` input bytes (`ZSTD_COMPRESSBOUND`), the largest
/// frame the index accepts for a chunk of that length.
pub fn max_frame_length(length: u64) -> u64 {
    const BLOCK: u64 = 128 * 1024;
    let small = if length < BLOCK {
        (BLOCK - length) >> 11
    } else {
        0
    };
    length.saturating_add(length >> 8).saturating_add(small)
}

/// One chunk: where it lies in the image and where its frame lies in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkEntry {
    /// Offset of the chunk in the image.
    pub image_offset: u64,
    /// Uncompressed length, 1 to the chunker maximum.
    pub length: u64,
    /// Offset of the chunk's zstd frame in the bundle.
    pub frame_offset: u64,
    /// Length of the frame.
    pub frame_length: u64,
    /// sha256 of the uncompressed chunk.
    pub sha256: [u8; 32],
}

impl ChunkEntry {
    /// The chunk's bytes in the image (and in the slot).
    pub fn image_range(&self) -> Range<u64> {
        self.image_offset..self.image_offset + self.length
    }

    /// The frame's bytes in the bundle.
    pub fn frame_range(&self) -> Range<u64> {
        self.frame_offset..self.frame_offset + self.frame_length
    }

    /// Whether `bytes` (read from a slot, say) are this chunk: same length and sha256. A device
    /// uses it to find chunks already written before an interruption.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.length && Sha256::digest(bytes).as_slice() == self.sha256
    }
}

/// A delta frame: the chunk `chunk` compressed with a base (a run of consecutive chunks of an
/// earlier release's image) as zstd's reference prefix. The base starts at the first chunk of
/// that image whose sha256 is `base_sha256` and ends after `base_length` bytes, on a chunk
/// boundary ([`ChunkIndex::deltas_from`]); a one-chunk base is that chunk. A device whose
/// running slot holds the base may fetch the delta instead of the chunk's full frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaEntry {
    /// Number of the chunk it rebuilds.
    pub chunk: u64,
    /// Length of the base: its chunks' lengths added up.
    pub base_length: u64,
    /// sha256 of the base's first chunk.
    pub base_sha256: [u8; 32],
    /// Offset of the delta frame in the bundle (in the delta area, after the chunks' frames).
    pub frame_offset: u64,
    /// Length of the delta frame.
    pub frame_length: u64,
}

impl DeltaEntry {
    /// The frame's bytes in the bundle.
    pub fn frame_range(&self) -> Range<u64> {
        self.frame_offset..self.frame_offset + self.frame_length
    }
}

/// A run of consecutive chunks compressed again as one zstd frame, for installs that download
/// all of them: one large frame decodes faster and compresses smaller than the chunks' own
/// frames. Each chunk is still checked against its sha256 as the frame's output passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentEntry {
    /// Number of its first chunk.
    pub first_chunk: u64,
    /// How many chunks it covers, at least one.
    pub chunks: u64,
    /// Offset of its zstd frame in the bundle (after the frame's skippable header).
    pub frame_offset: u64,
    /// Length of the frame.
    pub frame_length: u64,
}

impl SegmentEntry {
    /// The frame's bytes in the bundle.
    pub fn frame_range(&self) -> Range<u64> {
        self.frame_offset..self.frame_offset + self.frame_length
    }

    /// The chunk numbers it covers.
    pub fn chunk_range(&self) -> Range<usize> {
        let first = usize::try_from(self.first_chunk).unwrap_or(usize::MAX);
        first..first.saturating_add(usize::try_from(self.chunks).unwrap_or(usize::MAX))
    }
}

/// A run of chunks whose frames one HTTP Range request fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRange {
    /// Chunk numbers covered, in order (some may not have been wanted: see
    /// [`ChunkIndex::fetch_ranges`]).
    pub chunks: Range<usize>,
    /// Bundle bytes to fetch.
    pub bundle: Range<u64>,
}

impl FetchRange {
    /// One range from the start of `ranges[0]` to the end of the last (non-empty, in order).
    pub fn spanning(ranges: &[FetchRange]) -> FetchRange {
        match (ranges.first(), ranges.last()) {
            (Some(first), Some(last)) => FetchRange {
                chunks: first.chunks.start..last.chunks.end,
                bundle: first.bundle.start..last.bundle.end,
            },
            _ => FetchRange {
                chunks: 0..0,
                bundle: 0..0,
            },
        }
    }

    /// The `Range` header value: `bytes=first-last` (inclusive, as HTTP counts).
    pub fn http_range(&self) -> String {
        format!(
            "bytes={}-{}",
            self.bundle.start,
            self.bundle.end.saturating_sub(1)
        )
    }
}

/// A validated chunk index. Every value of this type satisfies the format's rules: the chunks
/// cover the image exactly and in order, and the frames are contiguous from bundle offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndex {
    chunker: ChunkerParams,
    zstd_level: i32,
    image_length: u64,
    image_sha256: [u8; 32],
    entries: Vec<ChunkEntry>,
    /// Delta frames, in chunk order (format 2).
    deltas: Vec<DeltaEntry>,
    /// The zstd dictionary every chunk frame was compressed with; empty: none (format 2).
    dictionary: Vec<u8>,
    /// Segments, in chunk order, covering every chunk or none (format 2).
    segments: Vec<SegmentEntry>,
}

impl ChunkIndex {
    /// Builds an index from its parts, checking the format's rules ([`Limits::FORMAT`]).
    /// `zstd_level` is recorded for people; readers do not act on it.
    pub fn new(
        chunker: ChunkerParams,
        zstd_level: i32,
        image_length: u64,
        image_sha256: [u8; 32],
        entries: Vec<ChunkEntry>,
    ) -> Result<Self, Error> {
        let index = ChunkIndex {
            chunker,
            zstd_level,
            image_length,
            image_sha256,
            entries,
            deltas: Vec::new(),
            dictionary: Vec::new(),
            segments: Vec::new(),
        };
        index.validate(&Limits::FORMAT)?;
        Ok(index)
    }

    /// The same index, its chunk frames declared compressed with the zstd `dictionary` (a
    /// trained dictionary, starting with zstd's dictionary magic); empty: none.
    pub fn with_dictionary(mut self, dictionary: Vec<u8>) -> Result<Self, Error> {
        self.dictionary = dictionary;
        self.validate(&Limits::FORMAT)?;
        Ok(self)
    }

    /// The same index with delta frames (in chunk order, their frames contiguous after the
    /// delta area's header; see [`ChunkIndex::delta_area_start`]).
    pub fn with_deltas(mut self, deltas: Vec<DeltaEntry>) -> Result<Self, Error> {
        self.deltas = deltas;
        self.validate(&Limits::FORMAT)?;
        Ok(self)
    }

    /// The same index with segments (in chunk order, covering every chunk, each frame after
    /// its skippable header, from [`ChunkIndex::segment_area_start`]).
    pub fn with_segments(mut self, segments: Vec<SegmentEntry>) -> Result<Self, Error> {
        self.segments = segments;
        self.validate(&Limits::FORMAT)?;
        Ok(self)
    }

    /// Parses and validates an index file. Refuses anything the format or `limits` do not
    /// allow, trailing bytes included; memory used is proportional to `bytes.len()`.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        let header = bytes.get(..HEADER_LENGTH).ok_or(Error::TruncatedHeader {
            length: bytes.len(),
            needed: HEADER_LENGTH,
        })?;
        let magic = array::<8>(header, 0);
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let version = u32_at(header, 8);
        let header_length = match version {
            1 => HEADER_LENGTH,
            2 => HEADER_V2_LENGTH,
            found => return Err(Error::UnsupportedVersion { found }),
        };
        let header = bytes.get(..header_length).ok_or(Error::TruncatedHeader {
            length: bytes.len(),
            needed: header_length,
        })?;
        let record_length = u32_at(header, 12);
        if record_length as usize != RECORD_LENGTH {
            return Err(Error::BadRecordLength {
                found: record_length,
            });
        }
        let chunker_id = u32_at(header, 16);
        if chunker_id != CHUNKER_FASTCDC_2020 {
            return Err(Error::UnsupportedChunker { found: chunker_id });
        }
        let chunker = ChunkerParams {
            min: u32_at(header, 20),
            avg: u32_at(header, 24),
            max: u32_at(header, 28),
        };
        let compression = u32_at(header, 32);
        if compression != COMPRESSION_ZSTD {
            return Err(Error::UnsupportedCompression { found: compression });
        }
        let zstd_level = i32::from_le_bytes(array::<4>(header, 36));
        let image_length = u64_at(header, 40);
        let bundle_length = u64_at(header, 48);
        let count = u64_at(header, 56);
        let image_sha256 = array::<32>(header, 64);
        let (delta_count, dictionary_length, segment_count) = match version {
            1 => (0, 0, 0),
            _ => (u64_at(header, 96), u64_at(header, 104), u64_at(header, 112)),
        };

        // Limits come before any count is trusted for anything.
        check_limits(&chunker, image_length, count, limits)?;
        check_extension_limits(delta_count, dictionary_length, limits)?;
        // Segments cover distinct chunks: no more of them than chunks.
        if segment_count > count {
            return Err(Error::SegmentCoverage {
                covered: segment_count,
                count,
            });
        }
        let body = &bytes[header_length..];
        let needed = (count.checked_add(delta_count))
            .and_then(|n| n.checked_mul(RECORD_LENGTH as u64))
            .and_then(|n| n.checked_add(segment_count.checked_mul(SEGMENT_RECORD_LENGTH as u64)?))
            .and_then(|n| n.checked_add(dictionary_length));
        match needed {
            Some(needed) if needed == body.len() as u64 => {}
            Some(needed) if needed > body.len() as u64 => {
                return Err(Error::TruncatedRecords {
                    count,
                    needed: needed.saturating_add(header_length as u64),
                    length: bytes.len(),
                })
            }
            Some(needed) => {
                return Err(Error::TrailingBytes {
                    count,
                    extra: body.len() as u64 - needed,
                })
            }
            None => {
                return Err(Error::TruncatedRecords {
                    count,
                    needed: u64::MAX,
                    length: bytes.len(),
                })
            }
        }
        // The lengths add up to `body.len()`, so these fit in usize.
        let (records, rest) = body.split_at(count as usize * RECORD_LENGTH);
        let (delta_records, rest) = rest.split_at(delta_count as usize * RECORD_LENGTH);
        let (segment_records, dictionary) =
            rest.split_at(segment_count as usize * SEGMENT_RECORD_LENGTH);
        let entries = records
            .chunks_exact(RECORD_LENGTH)
            .map(|record| ChunkEntry {
                image_offset: u64_at(record, 0),
                length: u64_at(record, 8),
                frame_offset: u64_at(record, 16),
                frame_length: u64_at(record, 24),
                sha256: array::<32>(record, 32),
            })
            .collect();
        let deltas = delta_records
            .chunks_exact(RECORD_LENGTH)
            .map(|record| DeltaEntry {
                chunk: u64_at(record, 0),
                base_length: u64_at(record, 8),
                frame_offset: u64_at(record, 16),
                frame_length: u64_at(record, 24),
                base_sha256: array::<32>(record, 32),
            })
            .collect();
        let segments = segment_records
            .chunks_exact(SEGMENT_RECORD_LENGTH)
            .map(|record| SegmentEntry {
                first_chunk: u64_at(record, 0),
                chunks: u64_at(record, 8),
                frame_offset: u64_at(record, 16),
                frame_length: u64_at(record, 24),
            })
            .collect();
        let index = ChunkIndex {
            chunker,
            zstd_level,
            image_length,
            image_sha256,
            entries,
            deltas,
            dictionary: dictionary.to_vec(),
            segments,
        };
        // Canonical: a file that needs no dictionary, deltas or segments is format 1.
        if version == 2 && index.format_version() != 2 {
            return Err(Error::NeedlessVersion);
        }
        index.validate(limits)?;
        let derived = index.bundle_length();
        if derived != bundle_length {
            return Err(Error::BundleLength {
                declared: bundle_length,
                derived,
            });
        }
        Ok(index)
    }

    /// The oldest format that expresses this index: 1 without a dictionary, deltas and
    /// segments, else 2.
    pub fn format_version(&self) -> u32 {
        match self.deltas.is_empty() && self.dictionary.is_empty() && self.segments.is_empty() {
            true => 1,
            false => 2,
        }
    }

    /// The index file's bytes (see `docs/bundle-format.md`), in [`ChunkIndex::format_version`].
    pub fn encode(&self) -> Vec<u8> {
        let version = self.format_version();
        let records = RECORD_LENGTH * (self.entries.len() + self.deltas.len())
            + SEGMENT_RECORD_LENGTH * self.segments.len();
        let mut out = Vec::with_capacity(HEADER_V2_LENGTH + records + self.dictionary.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(RECORD_LENGTH as u32).to_le_bytes());
        out.extend_from_slice(&CHUNKER_FASTCDC_2020.to_le_bytes());
        out.extend_from_slice(&self.chunker.min.to_le_bytes());
        out.extend_from_slice(&self.chunker.avg.to_le_bytes());
        out.extend_from_slice(&self.chunker.max.to_le_bytes());
        out.extend_from_slice(&COMPRESSION_ZSTD.to_le_bytes());
        out.extend_from_slice(&self.zstd_level.to_le_bytes());
        out.extend_from_slice(&self.image_length.to_le_bytes());
        out.extend_from_slice(&self.bundle_length().to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.image_sha256);
        if version >= 2 {
            out.extend_from_slice(&(self.deltas.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.dictionary.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        }
        for entry in &self.entries {
            out.extend_from_slice(&entry.image_offset.to_le_bytes());
            out.extend_from_slice(&entry.length.to_le_bytes());
            out.extend_from_slice(&entry.frame_offset.to_le_bytes());
            out.extend_from_slice(&entry.frame_length.to_le_bytes());
            out.extend_from_slice(&entry.sha256);
        }
        for delta in &self.deltas {
            out.extend_from_slice(&delta.chunk.to_le_bytes());
            out.extend_from_slice(&delta.base_length.to_le_bytes());
            out.extend_from_slice(&delta.frame_offset.to_le_bytes());
            out.extend_from_slice(&delta.frame_length.to_le_bytes());
            out.extend_from_slice(&delta.base_sha256);
        }
        for segment in &self.segments {
            out.extend_from_slice(&segment.first_chunk.to_le_bytes());
            out.extend_from_slice(&segment.chunks.to_le_bytes());
            out.extend_from_slice(&segment.frame_offset.to_le_bytes());
            out.extend_from_slice(&segment.frame_length.to_le_bytes());
        }
        out.extend_from_slice(&self.dictionary);
        out
    }

    /// The zstd dictionary of the chunk frames, if they were compressed with one.
    pub fn dictionary(&self) -> Option<&[u8]> {
        (!self.dictionary.is_empty()).then_some(self.dictionary.as_slice())
    }

    /// The delta frames, in chunk order.
    pub fn deltas(&self) -> &[DeltaEntry] {
        &self.deltas
    }

    /// The segments, in chunk order: all the chunks, or none.
    pub fn segments(&self) -> &[SegmentEntry] {
        &self.segments
    }

    /// The image range segment `segment` covers.
    pub fn segment_image_range(&self, segment: &SegmentEntry) -> Range<u64> {
        let chunks = &self.entries[segment.chunk_range()];
        match (chunks.first(), chunks.last()) {
            (Some(a), Some(b)) => a.image_offset..b.image_range().end,
            _ => 0..0,
        }
    }

    /// Where the delta area ends: the first segment's skippable frame starts here.
    pub fn segment_area_start(&self) -> u64 {
        match self.deltas.last() {
            Some(d) => d.frame_offset.saturating_add(d.frame_length),
            None => self.delta_area_start(),
        }
    }

    /// Where the chunk frames end: the skippable frame holding the delta frames starts here.
    pub fn delta_area_start(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.frame_range().end)
    }

    pub fn chunker(&self) -> ChunkerParams {
        self.chunker
    }

    /// The zstd level the builder used (informational).
    pub fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    pub fn image_length(&self) -> u64 {
        self.image_length
    }

    /// sha256 of the whole image.
    pub fn image_sha256(&self) -> [u8; 32] {
        self.image_sha256
    }

    /// The chunks in image order (which is also bundle order).
    pub fn entries(&self) -> &[ChunkEntry] {
        &self.entries
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ChunkEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length of the bundle file: the chunk frames are contiguous from 0, then, if there are
    /// deltas, the skippable frame that holds the delta frames, then each segment's frame in
    /// its own skippable frame: the end of the last of these.
    pub fn bundle_length(&self) -> u64 {
        match self.segments.last() {
            Some(s) => s.frame_offset.saturating_add(s.frame_length),
            None => self.segment_area_start(),
        }
    }

    /// For each chunk, the first delta frame whose base the image `seed` describes holds
    /// ([`ChunkIndex::delta_base`]): the delta's number in [`ChunkIndex::deltas`] and the
    /// base's image offset in `seed`. A device passes the index of its running slot's image;
    /// it still checks the base's bytes before decoding against them.
    pub fn deltas_from(&self, seed: &ChunkIndex) -> Vec<Option<(usize, u64)>> {
        let first = seed.first_by_sha256();
        let mut found = vec![None; self.entries.len()];
        for (n, d) in self.deltas.iter().enumerate() {
            let Some(slot) = usize::try_from(d.chunk).ok().and_then(|c| found.get_mut(c)) else {
                continue;
            };
            if slot.is_none() {
                *slot =
                    (seed.base_run(&first, d)).map(|run| (n, seed.entries[run.start].image_offset));
            }
        }
        found
    }

    /// The chunks of this image (a seed) that make up the base of `delta` found at image
    /// offset `offset` by [`ChunkIndex::deltas_from`]: the chunk starting there, whose sha256
    /// must be the delta's `base_sha256`, and the ones after it up to exactly `base_length`
    /// bytes; `None` when they are not that.
    pub fn delta_base(&self, delta: &DeltaEntry, offset: u64) -> Option<Range<usize>> {
        let (start, e) = self.entry_for_offset(offset)?;
        if e.image_offset != offset || e.sha256 != delta.base_sha256 {
            return None;
        }
        self.run_from(start, delta.base_length)
    }

    /// Where a device finds the base of `delta`: from the first chunk of its `base_sha256`.
    fn base_run(
        &self,
        first: &HashMap<[u8; 32], usize>,
        delta: &DeltaEntry,
    ) -> Option<Range<usize>> {
        self.run_from(*first.get(&delta.base_sha256)?, delta.base_length)
    }

    fn run_from(&self, start: usize, length: u64) -> Option<Range<usize>> {
        let mut total = 0u64;
        for (k, e) in self.entries.iter().enumerate().skip(start) {
            total = total.saturating_add(e.length);
            if total >= length {
                return (total == length).then_some(start..k + 1);
            }
        }
        None
    }

    /// Position of the first chunk of each sha256.
    fn first_by_sha256(&self) -> HashMap<[u8; 32], usize> {
        let mut first = HashMap::new();
        for (k, e) in self.entries.iter().enumerate() {
            first.entry(e.sha256).or_insert(k);
        }
        first
    }

    /// Image offset of the first chunk of each content (sha256, length).
    fn by_content(&self) -> HashMap<([u8; 32], u64), u64> {
        let mut by_content = HashMap::new();
        for e in &self.entries {
            by_content
                .entry((e.sha256, e.length))
                .or_insert(e.image_offset);
        }
        by_content
    }

    /// The chunk holding image byte `offset`, with its number; `None` past the image end.
    pub fn entry_for_offset(&self, offset: u64) -> Option<(usize, &ChunkEntry)> {
        let i = self
            .entries
            .partition_point(|e| e.image_range().end <= offset);
        self.entries.get(i).map(|e| (i, e))
    }

    /// For each chunk of this index, the image offset of an identical chunk (same length and
    /// sha256) in the image `seed` describes, if any. A device passes the index of the image in
    /// its active slot to copy those chunks locally instead of downloading them; it still checks
    /// the copied bytes with [`ChunkEntry::matches`] before writing them.
    pub fn locate_in(&self, seed: &ChunkIndex) -> Vec<Option<u64>> {
        let by_content = seed.by_content();
        self.entries
            .iter()
            .map(|e| by_content.get(&(e.sha256, e.length)).copied())
            .collect()
    }

    /// Groups the frames of the chunks for which `wanted(number, entry)` is true into Range
    /// requests. Wanted chunks that are adjacent share a request; a gap of at most `max_gap`
    /// unwanted bundle bytes is fetched too rather than opening a new request (the fetched
    /// unwanted chunks are listed in [`FetchRange::chunks`] and may be skipped or written).
    pub fn fetch_ranges(
        &self,
        mut wanted: impl FnMut(usize, &ChunkEntry) -> bool,
        max_gap: u64,
    ) -> Vec<FetchRange> {
        let mut ranges: Vec<FetchRange> = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if !wanted(i, entry) {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if entry.frame_offset - last.bundle.end <= max_gap => {
                    last.chunks.end = i + 1;
                    last.bundle.end = entry.frame_range().end;
                }
                _ => ranges.push(FetchRange {
                    chunks: i..i + 1,
                    bundle: entry.frame_range(),
                }),
            }
        }
        ranges
    }

    /// The format's rules on a parsed or assembled index (every rule but the header's
    /// declared bundle length, which only exists in the encoded form).
    fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limits(
            &self.chunker,
            self.image_length,
            self.entries.len() as u64,
            limits,
        )?;
        if self.image_length == 0 {
            return Err(Error::EmptyImage);
        }
        let max = u64::from(self.chunker.max);
        let mut image_end = 0u64;
        let mut frame_end = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            let chunk = i as u64;
            if e.image_offset != image_end {
                return Err(Error::ChunkNotContiguous {
                    chunk,
                    expected: image_end,
                    found: e.image_offset,
                });
            }
            if e.length == 0 || e.length > max {
                return Err(Error::ChunkLength {
                    chunk,
                    length: e.length,
                    max,
                });
            }
            // By subtraction: image_end <= image_length holds here, and the sum could overflow.
            if e.length > self.image_length - image_end {
                return Err(Error::ChunkBeyondImage {
                    chunk,
                    end: image_end.saturating_add(e.length),
                    image_length: self.image_length,
                });
            }
            if e.frame_offset != frame_end {
                return Err(Error::FrameNotContiguous {
                    chunk,
                    expected: frame_end,
                    found: e.frame_offset,
                });
            }
            let frame_max = max_frame_length(e.length);
            if e.frame_length == 0 || e.frame_length > frame_max {
                return Err(Error::FrameLength {
                    chunk,
                    length: e.frame_length,
                    max: frame_max,
                });
            }
            image_end += e.length;
            // Each frame is at most ~16 MiB and there are at most u64::MAX / 64 records in
            // any byte slice, so this cannot overflow in practice; saturate to stay panic-free.
            frame_end = frame_end.saturating_add(e.frame_length);
        }
        if image_end != self.image_length {
            return Err(Error::Coverage {
                covered: image_end,
                image_length: self.image_length,
            });
        }
        check_extension_limits(
            self.deltas.len() as u64,
            self.dictionary.len() as u64,
            limits,
        )?;
        check_dictionary(&self.dictionary)?;
        check_deltas(&self.deltas, &self.entries, frame_end, limits)?;
        check_segments(&self.segments, &self.entries, self.segment_area_start())
    }
}

/// The segment records' rules: consecutive runs of at least one chunk covering every chunk in
/// order, each at most [`MAX_SEGMENT_LENGTH`] image bytes, each frame right after its
/// skippable header, the first at `area_start`, and no larger than zstd's bound.
fn check_segments(
    segments: &[SegmentEntry],
    entries: &[ChunkEntry],
    area_start: u64,
) -> Result<(), Error> {
    let count = entries.len() as u64;
    let mut next_chunk = 0u64;
    let mut frame_end = area_start;
    for (n, s) in segments.iter().enumerate() {
        let segment = n as u64;
        if s.first_chunk != next_chunk || s.chunks == 0 || s.chunks > count - next_chunk {
            return Err(Error::SegmentNotContiguous {
                segment,
                expected: next_chunk,
                found: s.first_chunk,
            });
        }
        let chunks = &entries[s.chunk_range()];
        let length: u64 = chunks.iter().map(|e| e.length).sum();
        if length > MAX_SEGMENT_LENGTH {
            return Err(Error::SegmentLength {
                segment,
                length,
                max: MAX_SEGMENT_LENGTH,
            });
        }
        let expected = frame_end.saturating_add(SEGMENT_HEADER);
        if s.frame_offset != expected {
            return Err(Error::SegmentFrameNotContiguous {
                segment,
                expected,
                found: s.frame_offset,
            });
        }
        let max = max_frame_length(length);
        if s.frame_length == 0 || s.frame_length > max {
            return Err(Error::SegmentFrameLength {
                segment,
                length: s.frame_length,
                max,
            });
        }
        next_chunk += s.chunks;
        frame_end = s.frame_offset.saturating_add(s.frame_length);
    }
    if !segments.is_empty() && next_chunk != count {
        return Err(Error::SegmentCoverage {
            covered: next_chunk,
            count,
        });
    }
    Ok(())
}

fn check_extension_limits(
    delta_count: u64,
    dictionary_length: u64,
    limits: &Limits,
) -> Result<(), Error> {
    if delta_count > limits.max_deltas {
        return Err(Error::TooManyDeltas {
            count: delta_count,
            limit: limits.max_deltas,
        });
    }
    if dictionary_length > limits.max_dictionary_length {
        return Err(Error::DictionaryOverLimit {
            length: dictionary_length,
            limit: limits.max_dictionary_length,
        });
    }
    Ok(())
}

/// An empty dictionary means none; any other must be one zstd loads as a trained dictionary
/// (a raw-content one would make a frame's meaning depend on zstd guessing the kind).
fn check_dictionary(dictionary: &[u8]) -> Result<(), Error> {
    if dictionary.is_empty() {
        return Ok(());
    }
    if !dictionary.starts_with(&DICTIONARY_MAGIC) {
        return Err(Error::BadDictionary {
            why: "it does not start with zstd's dictionary magic",
        });
    }
    match zstd_safe::DDict::try_create(dictionary) {
        Some(_) => Ok(()),
        None => Err(Error::BadDictionary {
            why: "zstd cannot load it",
        }),
    }
}

/// The delta records' rules: in chunk order, at most [`MAX_DELTAS_PER_CHUNK`] per chunk, bases
/// a reader can buffer, frames contiguous after the delta area's header (which starts where the
/// chunk frames end, `chunk_frames_end`) and within one skippable frame.
fn check_deltas(
    deltas: &[DeltaEntry],
    entries: &[ChunkEntry],
    chunk_frames_end: u64,
    limits: &Limits,
) -> Result<(), Error> {
    let count = entries.len() as u64;
    let base_max = u64::from(limits.max_chunk_length);
    let area_start = chunk_frames_end.saturating_add(DELTA_AREA_HEADER);
    let mut frame_end = area_start;
    let mut previous: Option<(u64, usize)> = None;
    for (n, d) in deltas.iter().enumerate() {
        let delta = n as u64;
        let Some(entry) = entries.get(usize::try_from(d.chunk).unwrap_or(usize::MAX)) else {
            return Err(Error::DeltaChunk {
                delta,
                chunk: d.chunk,
                count,
            });
        };
        let same = match previous {
            Some((p, _)) if d.chunk < p => {
                return Err(Error::DeltaOrder {
                    delta,
                    chunk: d.chunk,
                    previous: p,
                })
            }
            Some((p, k)) if p == d.chunk => k + 1,
            _ => 1,
        };
        if same > MAX_DELTAS_PER_CHUNK {
            return Err(Error::TooManyAlternatives { chunk: d.chunk });
        }
        previous = Some((d.chunk, same));
        if d.base_length == 0 || d.base_length > base_max {
            return Err(Error::DeltaBaseLength {
                delta,
                length: d.base_length,
                max: base_max,
            });
        }
        if d.frame_offset != frame_end {
            return Err(Error::DeltaFrameNotContiguous {
                delta,
                expected: frame_end,
                found: d.frame_offset,
            });
        }
        let frame_max = max_frame_length(entry.length);
        if d.frame_length == 0 || d.frame_length > frame_max {
            return Err(Error::DeltaFrameLength {
                delta,
                length: d.frame_length,
                max: frame_max,
            });
        }
        frame_end = frame_end.saturating_add(d.frame_length);
    }
    let area = frame_end - area_start;
    if area > u64::from(u32::MAX) {
        return Err(Error::DeltaAreaTooLarge {
            length: area,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

impl<'a> IntoIterator for &'a ChunkIndex {
    type Item = &'a ChunkEntry;
    type IntoIter = std::slice::Iter<'a, ChunkEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

fn check_limits(
    chunker: &ChunkerParams,
    image_length: u64,
    count: u64,
    limits: &Limits,
) -> Result<(), Error> {
    chunker.validate()?;
    if chunker.max > limits.max_chunk_length {
        return Err(Error::ChunkerOverLimit {
            max: chunker.max,
            limit: limits.max_chunk_length,
        });
    }
    if image_length > limits.max_image_length {
        return Err(Error::ImageOverLimit {
            length: image_length,
            limit: limits.max_image_length,
        });
    }
    if count > limits.max_chunks {
        return Err(Error::TooManyChunks {
            count,
            limit: limits.max_chunks,
        });
    }
    Ok(())
}

/// Decompresses and checks chunks, reusing one zstd context and its buffers.
pub struct ChunkVerifier {
    dctx: zstd_safe::DCtx<'static>,
    /// The index's dictionary, digested once.
    dictionary: Option<zstd_safe::DDict<'static>>,
}

impl Default for ChunkVerifier {
    fn default() -> Self {
        Self::new()
    }
}

/// What a frame was compressed against.
#[derive(Clone, Copy)]
enum Reference<'a> {
    /// The verifier's dictionary, if it has one.
    Dictionary,
    /// A base chunk, as zstd's reference prefix (a delta frame).
    Prefix(&'a [u8]),
}

impl ChunkVerifier {
    /// A verifier for frames compressed without a dictionary.
    pub fn new() -> Self {
        ChunkVerifier {
            dctx: zstd_safe::DCtx::create(),
            dictionary: None,
        }
    }

    /// A verifier for the chunk frames of `index` (with its dictionary, if it has one).
    pub fn for_index(index: &ChunkIndex) -> Result<Self, Error> {
        Self::with_dictionary(index.dictionary())
    }

    /// A verifier for frames compressed with `dictionary` (`None`: without one).
    pub fn with_dictionary(dictionary: Option<&[u8]>) -> Result<Self, Error> {
        let dictionary = match dictionary {
            None => None,
            Some(d) => {
                check_dictionary(d)?;
                Some(zstd_safe::DDict::try_create(d).ok_or(Error::BadDictionary {
                    why: "zstd cannot load it",
                })?)
            }
        };
        Ok(ChunkVerifier {
            dctx: zstd_safe::DCtx::create(),
            dictionary,
        })
    }

    /// Decompresses the chunk frame `frame` into `out` (resized to `entry.length`) and checks
    /// it is exactly the chunk `entry` describes. The output never grows past `entry.length`,
    /// whatever the frame claims; on error `out` holds no trusted bytes.
    pub fn verify_into(
        &mut self,
        entry: &ChunkEntry,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.decode_checked(entry, entry.frame_length, frame, Reference::Dictionary, out)
    }

    /// Like [`ChunkVerifier::verify_into`] for the delta frame `delta` of the chunk `entry`:
    /// `base` must be the base the delta names, made of the seed's chunks `base_chunks`
    /// ([`ChunkIndex::delta_base`]): the first chunk's sha256 is the delta's, the lengths add
    /// up to its `base_length`, and every chunk's bytes are checked against its entry first,
    /// so bytes read from a slot are never trusted as a base. The result is checked against
    /// `entry` like any chunk.
    pub fn verify_delta_into(
        &mut self,
        entry: &ChunkEntry,
        delta: &DeltaEntry,
        base_chunks: &[ChunkEntry],
        base: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        out.clear();
        let bad_base = Error::DeltaBase {
            offset: entry.image_offset,
        };
        let lengths = (base_chunks.iter()).try_fold(0u64, |at, c| at.checked_add(c.length));
        if base_chunks.first().map(|c| c.sha256) != Some(delta.base_sha256)
            || lengths != Some(delta.base_length)
            || base.len() as u64 != delta.base_length
        {
            return Err(bad_base);
        }
        let mut rest = base;
        for c in base_chunks {
            let (piece, after) = rest.split_at(c.length as usize);
            if !c.matches(piece) {
                return Err(bad_base);
            }
            rest = after;
        }
        self.decode_checked(
            entry,
            delta.frame_length,
            frame,
            Reference::Prefix(base),
            out,
        )
    }

    /// The one decoding path: frame checks, one-shot decompression against `reference` into
    /// exactly `entry.length` bytes, length and sha256 checks.
    fn decode_checked(
        &mut self,
        entry: &ChunkEntry,
        frame_length: u64,
        frame: &[u8],
        reference: Reference<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let offset = entry.image_offset;
        // A decoded entry is within the chunker maximum; this guards hand-built ones, so that no
        // allocation below can exceed 16 MiB.
        let max = u64::from(*CHUNK_MAX_RANGE.end());
        if entry.length == 0 || entry.length > max {
            return Err(Error::EntryLength {
                offset,
                length: entry.length,
            });
        }
        let length = entry.length as usize;
        if frame.len() as u64 != frame_length {
            return Err(Error::FrameSize {
                offset,
                expected: frame_length,
                found: frame.len() as u64,
            });
        }
        // One frame and nothing after it: a second frame or a skippable frame would let a
        // bundle carry bytes the index does not account for.
        match zstd_safe::find_frame_compressed_size(frame) {
            Ok(size) if size == frame.len() => {}
            Ok(_) => {
                return Err(Error::NotOneFrame {
                    offset,
                    reason: "bytes follow the first frame",
                })
            }
            Err(code) => {
                return Err(Error::NotOneFrame {
                    offset,
                    reason: zstd_safe::get_error_name(code),
                })
            }
        }
        match zstd_safe::get_frame_content_size(frame) {
            Ok(Some(declared)) if declared != entry.length => {
                return Err(Error::ContentSize {
                    offset,
                    declared,
                    expected: entry.length,
                })
            }
            Ok(_) => {}
            Err(_) => {
                return Err(Error::NotOneFrame {
                    offset,
                    reason: "unreadable frame header",
                })
            }
        }
        out.clear();
        out.resize(length, 0);
        // One-shot decompression into a slice of exactly `length` bytes: zstd refuses to write
        // more, and uses the slice as its window, allocating nothing from the frame's claims.
        let written = match (reference, &self.dictionary) {
            (Reference::Dictionary, None) => self.dctx.decompress(out.as_mut_slice(), frame),
            (Reference::Dictionary, Some(d)) => {
                (self.dctx).decompress_using_ddict(out.as_mut_slice(), frame, d)
            }
            // A context per delta: the prefix is borrowed for this frame only, and deltas are
            // few.
            (Reference::Prefix(base), _) => {
                let mut dctx = zstd_safe::DCtx::create();
                (dctx.ref_prefix(base)).and_then(|_| dctx.decompress(out.as_mut_slice(), frame))
            }
        }
        .map_err(|code| {
            let reason = zstd_safe::get_error_name(code);
            Error::Decompress { offset, reason }
        });
        let written = match written {
            Ok(n) => n,
            Err(e) => {
                out.clear();
                return Err(e);
            }
        };
        if written != length {
            out.clear();
            return Err(Error::ChunkSize {
                offset,
                expected: entry.length,
                found: written as u64,
            });
        }
        let found = Sha256::digest(out.as_slice());
        if found.as_slice() != entry.sha256 {
            out.clear();
            return Err(Error::ChunkHash {
                offset,
                expected: hex::encode(entry.sha256),
                found: hex::encode(found),
            });
        }
        Ok(())
    }
}

/// Decompresses one frame and checks it against `entry`; see [`ChunkVerifier::verify_into`],
/// which reuses its context and buffer across chunks.
pub fn verify_chunk(entry: &ChunkEntry, frame: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    ChunkVerifier::new().verify_into(entry, frame, &mut out)?;
    Ok(out)
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array::<4>(bytes, at))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array::<8>(bytes, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    /// An index and its bundle, cut at the given chunk lengths from `image`.
    fn build(image: &[u8], lengths: &[usize]) -> (ChunkIndex, Vec<u8>) {
        let mut bundle = Vec::new();
        let mut entries = Vec::new();
        let mut at = 0;
        for &length in lengths {
            let chunk = &image[at..at + length];
            let frame = zstd::bulk::compress(chunk, 3).unwrap();
            entries.push(ChunkEntry {
                image_offset: at as u64,
                length: length as u64,
                frame_offset: bundle.len() as u64,
                frame_length: frame.len() as u64,
                sha256: Sha256::digest(chunk).into(),
            });
            bundle.extend_from_slice(&frame);
            at += length;
        }
        assert_eq!(at, image.len());
        let sha = Sha256::digest(image).into();
        let index = ChunkIndex::new(
            ChunkerParams::default(),
            3,
            image.len() as u64,
            sha,
            entries,
        )
        .unwrap();
        (index, bundle)
    }

    fn sample_image(len: usize, seed: u64) -> Vec<u8> {
        // Half text-like (compressible), half random: frames are real compressed blocks.
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len)
            .map(|i| {
                if (i / 4096) % 2 == 0 {
                    b"flipside "[i % 9]
                } else {
                    rng.u8(..)
                }
            })
            .collect()
    }

    fn sample() -> (ChunkIndex, Vec<u8>, Vec<u8>) {
        let image = sample_image(100_000, 1);
        let (index, bundle) = build(&image, &[30_000, 1, 50_000, 19_999]);
        (index, bundle, image)
    }

    /// A format-1 index as the first builder wrote it: two 4-byte chunks "flip" and "side" of
    /// the image "flipside", frames of 13 and 14 bytes, zstd level 19, default chunker. Readers
    /// must accept it forever (compatibility policy in docs/bundle-format.md). One line per
    /// 32 bytes: header (3 lines), then each 64-byte record (2 lines).
    const FORMAT_1_FIXTURE: &str = concat!(
        "464c495049445800010000004000000001000000004000000000010000000400",
        "010000001300000008000000000000001b000000000000000200000000000000",
        "e3286fe88221be2fdd92ed0dffce690151aa3fcbca04b785f9f399db5c3efbca",
        "0000000000000000040000000000000000000000000000000d00000000000000",
        "4e448897946ead9e39e8c61c2994b2ada30968ed9d14ac21ebaba710d823db64",
        "040000000000000004000000000000000d000000000000000e00000000000000",
        "ea7bf4bb723041e7d63fe6c74dc46c048c617eb49a454a1cd6edbf34d05a418e",
    );

    fn fixture_index() -> ChunkIndex {
        let entry = |offset: u64, frame_offset: u64, frame_length: u64, text: &[u8]| ChunkEntry {
            image_offset: offset,
            length: 4,
            frame_offset,
            frame_length,
            sha256: Sha256::digest(text).into(),
        };
        ChunkIndex::new(
            ChunkerParams::default(),
            19,
            8,
            Sha256::digest(b"flipside").into(),
            vec![entry(0, 0, 13, b"flip"), entry(4, 13, 14, b"side")],
        )
        .unwrap()
    }

    #[test]
    fn format_1_fixture_decodes_and_encodes_identically() {
        let bytes = hex::decode(FORMAT_1_FIXTURE).unwrap();
        let index = ChunkIndex::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(index, fixture_index());
        assert_eq!(index.encode(), bytes);
        assert_eq!(index.bundle_length(), 27);
        assert_eq!(index.zstd_level(), 19);
        assert_eq!(
            index.image_sha256(),
            <[u8; 32]>::from(Sha256::digest(b"flipside"))
        );
    }

    #[test]
    fn layout_offsets_match_the_documentation() {
        let bytes = fixture_index().encode();
        assert_eq!(bytes.len(), HEADER_LENGTH + 2 * RECORD_LENGTH);
        assert_eq!(&bytes[0..8], b"FLIPIDX\0");
        assert_eq!(u32_at(&bytes, 8), 1, "no dictionary, no deltas: format 1");
        assert_eq!(u32_at(&bytes, 12), 64);
        assert_eq!(u32_at(&bytes, 16), CHUNKER_FASTCDC_2020);
        assert_eq!(u32_at(&bytes, 20), 16384);
        assert_eq!(u32_at(&bytes, 24), 65536);
        assert_eq!(u32_at(&bytes, 28), 262144);
        assert_eq!(u32_at(&bytes, 32), COMPRESSION_ZSTD);
        assert_eq!(u32_at(&bytes, 36), 19);
        assert_eq!(u64_at(&bytes, 40), 8);
        assert_eq!(u64_at(&bytes, 48), 27);
        assert_eq!(u64_at(&bytes, 56), 2);
        assert_eq!(bytes[64..96], Sha256::digest(b"flipside")[..]);
        let second = &bytes[HEADER_LENGTH + RECORD_LENGTH..];
        assert_eq!(u64_at(second, 0), 4);
        assert_eq!(u64_at(second, 8), 4);
        assert_eq!(u64_at(second, 16), 13);
        assert_eq!(u64_at(second, 24), 14);
        assert_eq!(second[32..64], Sha256::digest(b"side")[..]);
    }

    #[test]
    fn round_trip_and_every_chunk_verifies() {
        let (index, bundle, image) = sample();
        let decoded = ChunkIndex::decode(&index.encode(), &Limits::default()).unwrap();
        assert_eq!(decoded, index);
        assert_eq!(index.bundle_length(), bundle.len() as u64);
        let mut verifier = ChunkVerifier::new();
        let mut out = Vec::new();
        let mut rebuilt = Vec::new();
        for entry in &index {
            let frame =
                &bundle[entry.frame_range().start as usize..entry.frame_range().end as usize];
            verifier.verify_into(entry, frame, &mut out).unwrap();
            assert!(entry.matches(&out));
            rebuilt.extend_from_slice(&out);
        }
        assert_eq!(rebuilt, image);
    }

    #[test]
    fn empty_image_is_refused() {
        let empty = ChunkIndex::new(ChunkerParams::default(), 3, 0, [0; 32], vec![]);
        assert_eq!(empty, Err(Error::EmptyImage));
        let mut bytes = fixture_index().encode();
        put_u64(&mut bytes, 40, 0);
        put_u64(&mut bytes, 48, 0);
        put_u64(&mut bytes, 56, 0);
        bytes.truncate(HEADER_LENGTH);
        assert_eq!(
            ChunkIndex::decode(&bytes, &Limits::default()),
            Err(Error::EmptyImage)
        );
    }

    /// An index over 4 GiB: offsets and lengths are 64-bit everywhere.
    #[test]
    fn five_gib_image_round_trips() {
        let chunk = 256 * KIB;
        let count = 5 * (1 << 30) / chunk;
        let frame = 1000;
        let entries: Vec<ChunkEntry> = (0..count)
            .map(|i| ChunkEntry {
                image_offset: i * chunk,
                length: chunk,
                frame_offset: i * frame,
                frame_length: frame,
                sha256: [i as u8; 32],
            })
            .collect();
        let length = 5u64 << 30;
        let index = ChunkIndex::new(ChunkerParams::default(), 3, length, [7; 32], entries).unwrap();
        let decoded = ChunkIndex::decode(&index.encode(), &Limits::default()).unwrap();
        assert_eq!(decoded, index);
        assert_eq!(decoded.image_length(), length);
        assert_eq!(decoded.bundle_length(), count * frame);
        let (i, last) = decoded.entry_for_offset(length - 1).unwrap();
        assert_eq!(i as u64, count - 1);
        assert_eq!(last.image_range(), length - chunk..length);
        let (i, e) = decoded.entry_for_offset(4 << 30).unwrap();
        assert_eq!(e.image_offset, 4 << 30);
        assert_eq!(i as u64, (4 << 30) / chunk);
        assert_eq!(decoded.entry_for_offset(length), None);
        let small = Limits {
            max_image_length: 4 << 30,
            ..Limits::default()
        };
        assert_eq!(
            ChunkIndex::decode(&index.encode(), &small),
            Err(Error::ImageOverLimit {
                length,
                limit: 4 << 30
            })
        );
    }

    fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Byte offset of field `at` of record `n`.
    fn rec(n: usize, at: usize) -> usize {
        HEADER_LENGTH + n * RECORD_LENGTH + at
    }

    #[test]
    fn every_violation_has_its_error() {
        let (index, _, _) = sample();
        let good = index.encode();
        let bundle_length = index.bundle_length();
        let f1 = index.entries()[1].frame_offset;
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutation, Error)> = vec![
            (
                "short header",
                Box::new(|b| b.truncate(95)),
                Error::TruncatedHeader {
                    length: 95,
                    needed: 96,
                },
            ),
            (
                "magic",
                Box::new(|b| b[0] = b'X'),
                Error::BadMagic {
                    found: *b"XLIPIDX\0",
                },
            ),
            (
                "version",
                Box::new(|b| put_u32(b, 8, 3)),
                Error::UnsupportedVersion { found: 3 },
            ),
            (
                "record length",
                Box::new(|b| put_u32(b, 12, 56)),
                Error::BadRecordLength { found: 56 },
            ),
            (
                "chunker id",
                Box::new(|b| put_u32(b, 16, 9)),
                Error::UnsupportedChunker { found: 9 },
            ),
            (
                "min > avg",
                Box::new(|b| put_u32(b, 20, 65537)),
                Error::InvalidChunker {
                    min: 65537,
                    avg: 65536,
                    max: 262144,
                    why: "sizes must satisfy min <= avg <= max",
                },
            ),
            (
                "max over fastcdc",
                Box::new(|b| put_u32(b, 28, 32 << 20)),
                Error::InvalidChunker {
                    min: 16384,
                    avg: 65536,
                    max: 32 << 20,
                    why: "max must be 1 KiB to 16 MiB",
                },
            ),
            (
                "max over limit",
                Box::new(|b| put_u32(b, 28, 8 << 20)),
                Error::ChunkerOverLimit {
                    max: 8 << 20,
                    limit: 4 << 20,
                },
            ),
            (
                "compression id",
                Box::new(|b| put_u32(b, 32, 2)),
                Error::UnsupportedCompression { found: 2 },
            ),
            (
                "count too high",
                Box::new(|b| put_u64(b, 56, 5)),
                Error::TruncatedRecords {
                    count: 5,
                    needed: 96 + 5 * 64,
                    length: 96 + 4 * 64,
                },
            ),
            (
                "count overflows",
                Box::new(|b| put_u64(b, 56, 1 << 60)),
                Error::TooManyChunks {
                    count: 1 << 60,
                    limit: 1 << 22,
                },
            ),
            (
                "truncated record",
                Box::new(|b| {
                    b.pop();
                }),
                Error::TruncatedRecords {
                    count: 4,
                    needed: 96 + 4 * 64,
                    length: 96 + 4 * 64 - 1,
                },
            ),
            (
                "trailing bytes",
                Box::new(|b| b.extend_from_slice(&[0; 3])),
                Error::TrailingBytes { count: 4, extra: 3 },
            ),
            (
                "gap between chunks",
                Box::new(|b| put_u64(b, rec(2, 0), 30_002)),
                Error::ChunkNotContiguous {
                    chunk: 2,
                    expected: 30_001,
                    found: 30_002,
                },
            ),
            (
                "zero-length chunk",
                Box::new(|b| put_u64(b, rec(1, 8), 0)),
                Error::ChunkLength {
                    chunk: 1,
                    length: 0,
                    max: 262144,
                },
            ),
            (
                "chunk over max",
                Box::new(|b| put_u64(b, rec(0, 8), 262145)),
                Error::ChunkLength {
                    chunk: 0,
                    length: 262145,
                    max: 262144,
                },
            ),
            (
                "last chunk past the image",
                Box::new(|b| put_u64(b, rec(3, 8), 20_000)),
                Error::ChunkBeyondImage {
                    chunk: 3,
                    end: 100_001,
                    image_length: 100_000,
                },
            ),
            (
                "chunks stop short of the image",
                Box::new(|b| put_u64(b, 40, 100_001)),
                Error::Coverage {
                    covered: 100_000,
                    image_length: 100_001,
                },
            ),
            (
                "frame gap",
                Box::new(move |b| put_u64(b, rec(1, 16), f1 + 1)),
                Error::FrameNotContiguous {
                    chunk: 1,
                    expected: f1,
                    found: f1 + 1,
                },
            ),
            (
                "empty frame",
                Box::new(|b| put_u64(b, rec(3, 24), 0)),
                Error::FrameLength {
                    chunk: 3,
                    length: 0,
                    max: max_frame_length(19_999),
                },
            ),
            (
                "frame over zstd's bound",
                Box::new(|b| put_u64(b, rec(1, 24), 65)),
                Error::FrameLength {
                    chunk: 1,
                    length: 65,
                    max: 64,
                },
            ),
            (
                "declared bundle length",
                Box::new(move |b| put_u64(b, 48, bundle_length + 1)),
                Error::BundleLength {
                    declared: bundle_length + 1,
                    derived: bundle_length,
                },
            ),
        ];
        for (what, mutate, expected) in cases {
            let mut bytes = good.clone();
            mutate(&mut bytes);
            assert_eq!(
                ChunkIndex::decode(&bytes, &Limits::default()),
                Err(expected),
                "{what}"
            );
        }
    }

    #[test]
    fn count_overflow_is_refused_without_limits() {
        let mut bytes = fixture_index().encode();
        put_u64(&mut bytes, 56, 1 << 60);
        assert_eq!(
            ChunkIndex::decode(&bytes, &Limits::FORMAT),
            Err(Error::TruncatedRecords {
                count: 1 << 60,
                needed: u64::MAX,
                length: bytes.len(),
            })
        );
    }

    #[test]
    fn limits_on_chunk_count_apply() {
        let (index, _, _) = sample();
        let limits = Limits {
            max_chunks: 3,
            ..Limits::default()
        };
        assert_eq!(
            ChunkIndex::decode(&index.encode(), &limits),
            Err(Error::TooManyChunks { count: 4, limit: 3 })
        );
    }

    #[test]
    fn new_applies_the_same_rules() {
        let (index, _, _) = sample();
        let mut entries = index.entries().to_vec();
        entries.swap(1, 2);
        assert!(matches!(
            ChunkIndex::new(index.chunker(), 3, 100_000, [0; 32], entries),
            Err(Error::ChunkNotContiguous { chunk: 1, .. })
        ));
        let bad_chunker = ChunkerParams {
            min: 10,
            ..ChunkerParams::default()
        };
        assert!(matches!(
            ChunkIndex::new(bad_chunker, 3, 0, [0; 32], vec![]),
            Err(Error::InvalidChunker { .. })
        ));
    }

    #[test]
    fn chunker_ranges() {
        ChunkerParams::default().validate().unwrap();
        let at = |min, avg, max| ChunkerParams { min, avg, max }.validate();
        at(64, 256, 1024).unwrap();
        at(1 << 20, 4 << 20, 16 << 20).unwrap();
        assert!(at(63, 256, 1024).is_err());
        assert!(at(64, 255, 1024).is_err());
        assert!(at(64, 256, 1023).is_err());
        assert!(at((1 << 20) + 1, 4 << 20, 16 << 20).is_err());
        assert!(at(64, (4 << 20) + 1, 16 << 20).is_err());
        assert!(at(64, 256, (16 << 20) + 1).is_err());
        assert!(at(2048, 1024, 4096).is_err());
        assert!(at(1024, 4096, 2048).is_err());
    }

    #[test]
    fn frame_bound_is_zstds() {
        let sizes = (0..=300_000u64)
            .step_by(997)
            .chain([
                0,
                1,
                2,
                127 * 1024,
                128 * 1024 - 1,
                128 * 1024,
                128 * 1024 + 1,
            ])
            .chain([256 * 1024, 4 << 20, 16 << 20]);
        for size in sizes {
            assert_eq!(
                max_frame_length(size),
                zstd_safe::compress_bound(size as usize) as u64,
                "{size}"
            );
        }
    }

    #[test]
    fn frames_of_incompressible_max_chunks_fit_the_bound() {
        let mut rng = fastrand::Rng::with_seed(5);
        for length in [1usize, 100, 16 * 1024, 128 * 1024, 256 * 1024] {
            let data: Vec<u8> = (0..length).map(|_| rng.u8(..)).collect();
            for level in [1, 3, 19] {
                let frame = zstd::bulk::compress(&data, level).unwrap();
                assert!(frame.len() as u64 <= max_frame_length(length as u64));
            }
        }
    }

    #[test]
    fn entry_for_offset_finds_every_byte() {
        let image = sample_image(300, 2);
        let (index, _) = build(&image, &[1, 2, 3, 50, 244]);
        for offset in 0..320u64 {
            match index.entry_for_offset(offset) {
                Some((i, e)) => {
                    assert!(e.image_range().contains(&offset), "{offset}");
                    assert_eq!(&index.entries()[i], e);
                }
                None => assert!(offset >= 300, "{offset}"),
            }
        }
    }

    fn entry_with(length: u64, frame_length: u64, sha: u8) -> ChunkEntry {
        ChunkEntry {
            image_offset: 0,
            length,
            frame_offset: 0,
            frame_length,
            sha256: [sha; 32],
        }
    }

    /// An index of chunks with given (length, frame length, hash byte).
    fn synthetic(chunks: &[(u64, u64, u8)]) -> ChunkIndex {
        let mut entries = Vec::new();
        let (mut at, mut frame_at) = (0, 0);
        for &(length, frame_length, sha) in chunks {
            entries.push(ChunkEntry {
                image_offset: at,
                frame_offset: frame_at,
                ..entry_with(length, frame_length, sha)
            });
            at += length;
            frame_at += frame_length;
        }
        ChunkIndex::new(ChunkerParams::default(), 3, at, [0; 32], entries).unwrap()
    }

    #[test]
    fn locate_in_matches_content_and_length() {
        let old = synthetic(&[(100, 50, 1), (200, 60, 2), (300, 70, 3)]);
        let new = synthetic(&[(200, 60, 2), (100, 50, 9), (300, 70, 3), (301, 70, 3)]);
        assert_eq!(new.locate_in(&old), vec![Some(100), None, Some(300), None]);
    }

    #[test]
    fn fetch_ranges_coalesce_adjacent_and_small_gaps() {
        let index = synthetic(&[
            (100, 10, 0),
            (100, 10, 1),
            (100, 10, 2),
            (1000, 500, 3),
            (100, 10, 4),
            (100, 10, 5),
        ]);
        let want = |set: &'static [usize]| move |i: usize, _: &ChunkEntry| set.contains(&i);
        assert_eq!(index.fetch_ranges(want(&[]), 0), vec![]);
        assert_eq!(
            index.fetch_ranges(want(&[0, 1, 4]), 0),
            vec![
                FetchRange {
                    chunks: 0..2,
                    bundle: 0..20
                },
                FetchRange {
                    chunks: 4..5,
                    bundle: 530..540
                },
            ]
        );
        // A 10-byte gap is bridged with max_gap 10, the 500-byte frame is not.
        assert_eq!(
            index.fetch_ranges(want(&[0, 2, 4, 5]), 10),
            vec![
                FetchRange {
                    chunks: 0..3,
                    bundle: 0..30
                },
                FetchRange {
                    chunks: 4..6,
                    bundle: 530..550
                },
            ]
        );
        let all = index.fetch_ranges(|_, _| true, 0);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].http_range(), "bytes=0-549");
    }

    fn frame_of<'a>(bundle: &'a [u8], e: &ChunkEntry) -> &'a [u8] {
        &bundle[e.frame_offset as usize..(e.frame_offset + e.frame_length) as usize]
    }

    #[test]
    fn verify_refuses_each_kind_of_bad_frame() {
        let (index, bundle, _) = sample();
        let e0 = index.entries()[0];
        let frame = frame_of(&bundle, &e0).to_vec();
        assert_eq!(verify_chunk(&e0, &frame).unwrap().len(), 30_000);

        // Wrong size given (a range request that returned too much).
        let mut longer = frame.clone();
        longer.push(0);
        assert_eq!(
            verify_chunk(&e0, &longer),
            Err(Error::FrameSize {
                offset: 0,
                expected: e0.frame_length,
                found: e0.frame_length + 1
            })
        );
        let sized = |frame: &[u8]| ChunkEntry {
            frame_length: frame.len() as u64,
            ..e0
        };

        // Trailing bytes and a second frame after the first.
        assert_eq!(
            verify_chunk(&sized(&longer), &longer),
            Err(Error::NotOneFrame {
                offset: 0,
                reason: "bytes follow the first frame"
            })
        );
        let mut two = frame.clone();
        two.extend_from_slice(&zstd::bulk::compress(b"", 3).unwrap());
        assert!(matches!(
            verify_chunk(&sized(&two), &two),
            Err(Error::NotOneFrame { .. })
        ));

        // Not zstd at all; a skippable frame; a truncated frame.
        let junk = vec![0x55u8; frame.len()];
        assert!(matches!(
            verify_chunk(&e0, &junk),
            Err(Error::NotOneFrame { .. })
        ));
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0];
        skippable.extend_from_slice(b"abcd");
        assert_eq!(
            verify_chunk(&sized(&skippable), &skippable),
            Err(Error::ContentSize {
                offset: 0,
                declared: 0,
                expected: 30_000
            })
        );
        let short = &frame[..frame.len() - 1];
        assert!(matches!(
            verify_chunk(&sized(short), short),
            Err(Error::NotOneFrame { .. })
        ));

        // Declared content size disagrees with the index.
        let other = zstd::bulk::compress(&[1u8; 30_001], 3).unwrap();
        assert_eq!(
            verify_chunk(&sized(&other), &other),
            Err(Error::ContentSize {
                offset: 0,
                declared: 30_001,
                expected: 30_000
            })
        );

        // No declared size: the output cap and the length check still hold.
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let mut unsized_frame = Vec::with_capacity(40_000);
        cctx.compress2(&mut unsized_frame, &[1u8; 30_001]).unwrap();
        assert_eq!(
            verify_chunk(&sized(&unsized_frame), &unsized_frame),
            Err(Error::Decompress {
                offset: 0,
                reason: "Destination buffer is too small"
            })
        );
        unsized_frame.clear();
        cctx.compress2(&mut unsized_frame, &[1u8; 29_999]).unwrap();
        assert_eq!(
            verify_chunk(&sized(&unsized_frame), &unsized_frame),
            Err(Error::ChunkSize {
                offset: 0,
                expected: 30_000,
                found: 29_999
            })
        );

        // Right size, wrong bytes.
        let same_size = zstd::bulk::compress(&[7u8; 30_000], 3).unwrap();
        assert!(matches!(
            verify_chunk(&sized(&same_size), &same_size),
            Err(Error::ChunkHash { offset: 0, .. })
        ));

        // A hand-made entry cannot make the verifier allocate beyond 16 MiB.
        let huge = ChunkEntry {
            length: 1 << 40,
            ..sized(&frame)
        };
        assert_eq!(
            verify_chunk(&huge, &frame),
            Err(Error::EntryLength {
                offset: 0,
                length: 1 << 40
            })
        );
    }

    /// Random corruption of a valid index never panics; what is accepted re-encodes to the
    /// same bytes (decoding is canonical).
    #[test]
    fn mutated_indexes_never_panic() {
        let (index, _, _) = sample();
        let good = index.encode();
        let mut rng = fastrand::Rng::with_seed(42);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..rng.usize(1..4) {
                match rng.u8(..4) {
                    0 => {
                        let at = rng.usize(..bytes.len());
                        bytes[at] = rng.u8(..);
                    }
                    1 => {
                        let at = rng.usize(..bytes.len());
                        bytes[at] ^= 1 << rng.u8(..8);
                    }
                    2 => bytes.truncate(rng.usize(..=bytes.len())),
                    _ => bytes.push(rng.u8(..)),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if let Ok(decoded) = ChunkIndex::decode(&bytes, &Limits::default()) {
                assert_eq!(decoded.encode(), bytes);
                accepted += 1;
            }
        }
        // Only changes to the informational level and the hashes can be accepted.
        assert!(accepted < 20_000);
    }

    /// Random corruption of frames never panics, and nothing but the true chunk is accepted.
    #[test]
    fn mutated_frames_never_pass() {
        let (index, bundle, image) = sample();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut verifier = ChunkVerifier::new();
        let mut out = Vec::new();
        for _ in 0..3_000 {
            let n = rng.usize(..index.len());
            let e = index.entries()[n];
            let mut frame = frame_of(&bundle, &e).to_vec();
            let at = rng.usize(..frame.len());
            frame[at] ^= rng.u8(1..);
            if verifier.verify_into(&e, &frame, &mut out).is_ok() {
                let range = e.image_range();
                assert_eq!(out, image[range.start as usize..range.end as usize]);
            }
        }
    }
}

#[cfg(test)]
#[path = "index_v2_tests.rs"]
mod v2_tests;
