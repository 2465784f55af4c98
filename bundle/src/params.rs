//! What a bundle is built with, its defaults and their validation.

use flipside_contract::index::{ChunkerParams, Limits};

use crate::Error;

/// Default zstd level: 16. Measured with `examples/bundle_bench.rs` on uncompressed squashfs
/// images of real files (figures in `docs/bundle-format.md`, "Choosing the zstd level"): on
/// independent 64 KiB chunks, level 12 costs 3 times level 9's CPU for under 1% gain; 15-16
/// make the bundle 4-8% smaller than level 9 (every device downloads that, on every update);
/// 17-19 add at most 0.3% for up to 1.7 times 16's CPU. Level 16 runs at about 6 MB/s per core
/// (a 1 GB image in about 80 s on 2 cores); development builds can pass 3 (over 100 MB/s).
pub const DEFAULT_ZSTD_LEVEL: i32 = 16;

/// Most compression threads: far above any build host's cores, and a typo above it (10000)
/// would only start threads that wait for each other.
pub const MAX_THREADS: usize = 256;

/// How to cut and compress an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleParams {
    /// FastCDC sizes; default 16/64/256 KiB.
    pub chunker: ChunkerParams,
    /// zstd level of every frame: 1 to 22, or negative for zstd's fast levels (0, zstd's
    /// "default", is refused so that the index records the level actually used).
    pub zstd_level: i32,
    /// Compression threads, at most [`MAX_THREADS`]; 0 uses the available parallelism. The
    /// output does not depend on it.
    pub threads: usize,
    /// Largest zstd dictionary to train on the image's chunks and compress every chunk frame
    /// with (shipped in the index), at most [`MAX_DICTIONARY`]; 0, the default: none. It makes
    /// the bundle about 2% smaller at the cost of more compression time, and `zstd -d` then
    /// needs the dictionary (`-D`).
    pub dictionary_length: u32,
    /// Also compress the image as segments (large frames, `docs/bundle-format.md`) for full
    /// installs: default on. Without them the bundle is about half the size on the server, and
    /// a full install downloads and decodes every chunk frame (about 17% more bytes).
    pub segments: bool,
}

/// Largest dictionary the builder trains: what devices accept by default.
pub const MAX_DICTIONARY: u32 = 1 << 20;

/// A dictionary size that zstd's documentation suggests (about 100 times smaller than the
/// samples it is trained on).
pub const SUGGESTED_DICTIONARY: u32 = 112 * 1024;

impl Default for BundleParams {
    fn default() -> Self {
        BundleParams {
            chunker: ChunkerParams::default(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            threads: 0,
            dictionary_length: 0,
            segments: true,
        }
    }
}

impl BundleParams {
    /// Refuses parameters FastCDC or zstd would reject (or panic on), and chunks larger than a
    /// device with default [`Limits`] accepts.
    pub fn validate(&self) -> Result<(), Error> {
        self.chunker
            .validate()
            .map_err(|e| Error::InvalidParams { why: e.to_string() })?;
        let limit = Limits::default().max_chunk_length;
        if self.chunker.max > limit {
            return Err(Error::InvalidParams {
                why: format!(
                    "chunker max {} is over {limit}, the largest chunk devices accept by default",
                    self.chunker.max
                ),
            });
        }
        if self.threads > MAX_THREADS {
            return Err(Error::InvalidParams {
                why: format!(
                    "{} compression threads is over the cap of {MAX_THREADS}; pass 0 for one per core",
                    self.threads
                ),
            });
        }
        if self.dictionary_length > MAX_DICTIONARY
            || (self.dictionary_length > 0 && self.dictionary_length < 1024)
        {
            return Err(Error::InvalidParams {
                why: format!(
                    "a dictionary of {} bytes is outside 1 KiB to {MAX_DICTIONARY} (or 0: none)",
                    self.dictionary_length
                ),
            });
        }
        let levels = zstd::compression_level_range();
        if self.zstd_level == 0 || !levels.contains(&self.zstd_level) {
            return Err(Error::InvalidParams {
                why: format!(
                    "zstd level {} is not in {}..={} or is 0",
                    self.zstd_level,
                    levels.start(),
                    levels.end()
                ),
            });
        }
        Ok(())
    }

    /// The thread count to use: `threads`, or the available parallelism when 0.
    pub fn effective_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BundleParams::default().validate().unwrap();
        assert!(BundleParams::default().effective_threads() >= 1);
        let three = BundleParams {
            threads: 3,
            ..BundleParams::default()
        };
        assert_eq!(three.effective_threads(), 3);
    }

    #[test]
    fn bad_values_are_refused_not_panicked_on() {
        let with = |chunker: ChunkerParams, zstd_level| BundleParams {
            chunker,
            zstd_level,
            threads: 1,
            dictionary_length: 0,
            segments: true,
        };
        let chunker = ChunkerParams::default();
        for bad in [
            with(ChunkerParams { min: 1, ..chunker }, 3),
            with(
                ChunkerParams {
                    max: 8 << 20,
                    ..chunker
                },
                3,
            ),
            with(
                ChunkerParams {
                    avg: 1 << 30,
                    ..chunker
                },
                3,
            ),
            with(chunker, 0),
            with(chunker, 23),
            with(chunker, i32::MIN),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidParams { .. })),
                "{bad:?}"
            );
        }
        let many = |threads| BundleParams {
            threads,
            ..BundleParams::default()
        };
        assert!(matches!(
            many(MAX_THREADS + 1).validate(),
            Err(Error::InvalidParams { .. })
        ));
        many(MAX_THREADS).validate().unwrap();
        let dict = |dictionary_length| BundleParams {
            dictionary_length,
            ..BundleParams::default()
        };
        for bad in [1, 1023, MAX_DICTIONARY + 1, u32::MAX] {
            assert!(matches!(
                dict(bad).validate(),
                Err(Error::InvalidParams { .. })
            ));
        }
        for good in [0, 1024, SUGGESTED_DICTIONARY, MAX_DICTIONARY] {
            dict(good).validate().unwrap();
        }
        with(chunker, -5).validate().unwrap();
        with(chunker, 22).validate().unwrap();
    }

    /// The contract crate copies FastCDC's ranges (it has no FastCDC dependency): they must
    /// stay equal, or validation would let a panic through.
    #[test]
    fn chunker_ranges_are_fastcdcs() {
        use fastcdc::v2020 as cdc;
        use flipside_contract::index as idx;
        assert_eq!(idx::CHUNK_MIN_RANGE, cdc::MINIMUM_MIN..=cdc::MINIMUM_MAX);
        assert_eq!(idx::CHUNK_AVG_RANGE, cdc::AVERAGE_MIN..=cdc::AVERAGE_MAX);
        assert_eq!(idx::CHUNK_MAX_RANGE, cdc::MAXIMUM_MIN..=cdc::MAXIMUM_MAX);
    }
}
