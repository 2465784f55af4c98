//! How the place step uses the bundle's segments (`docs/bundle-format.md`): a segment whose
//! chunks are all to be downloaded (every one, in a full install) comes as one large frame
//! instead of its chunks' frames: fewer bytes, and one zstd stream decodes faster than many
//! small frames. A decoding thread cuts the stream at the index's chunk boundaries; this thread
//! checks each chunk's sha256 before it writes it, as for chunk frames. Any failure (network,
//! a frame that does not decode, a chunk that does not verify) only ends the segment path: the
//! chunks not yet written keep [`ChunkSource::Fetch`] and come as their own frames, which have
//! the retries and the mirror failover.

use std::sync::mpsc;

use flipside_contract::index::{ChunkIndex, Error as IndexError, SegmentEntry, SEGMENT_WINDOW_LOG};
use sha2::{Digest, Sha256};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
use zstd::zstd_safe::DParameter;

use super::parts::Placement;
use super::steps::Run;
use super::writer::{RunWriter, Writer};
use crate::device::{Device, ReadBack};
use crate::error::{Error, Result};
use crate::http::ByteStream;
use crate::plan::ChunkSource;
use crate::progress::Progress;

/// Decoded chunks queued between the decoding thread and the writer.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Compressed bytes read from the network at a time.
const INPUT_BYTES: usize = 128 << 10;

impl<B: ReadBack> Run<'_, B> {
    /// Places every segment whose chunks are all planned as downloads; the chunks written
    /// become [`ChunkSource::Present`].
    pub(super) fn fetch_segments(
        &mut self,
        part: &Placement,
        sources: &mut [ChunkSource],
        w: &mut Writer,
    ) -> Result<()> {
        let Some(location) = self
            .source
            .target_locations(&part.bundle)
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        for segment in part.index.segments() {
            let chunks = segment.chunk_range();
            if !sources[chunks.clone()]
                .iter()
                .all(|&s| s == ChunkSource::Fetch)
            {
                continue;
            }
            let url = location.to_string();
            let result = (self.source)
                .open_range(&location, segment.frame_range(), part.bundle.length)
                .and_then(|mut stream| {
                    let body = SegmentBody {
                        stream: stream.as_mut(),
                        url: &url,
                        target: part.bundle.name.as_str(),
                    };
                    w.stream_segment(
                        self.device,
                        &part.index,
                        segment,
                        sources,
                        body,
                        &mut self.progress,
                    )
                });
            if let Err(e) = result {
                let left = sources[chunks]
                    .iter()
                    .filter(|&&s| s == ChunkSource::Fetch)
                    .count();
                log::warn!("{e}; the {left} chunks of this segment not yet written come as their own frames");
            }
        }
        Ok(())
    }
}

/// A segment's response body, with what failures are reported with.
pub(super) struct SegmentBody<'s> {
    pub(super) stream: &'s mut dyn ByteStream,
    pub(super) url: &'s str,
    pub(super) target: &'s str,
}

impl SegmentBody<'_> {
    fn error(&self, source: IndexError) -> Error {
        Error::Chunk {
            target: self.target.to_string(),
            url: self.url.to_string(),
            source,
        }
    }
}

impl Writer<'_> {
    /// Decodes `segment` from `body` and writes each chunk once verified; the chunks written
    /// are marked [`ChunkSource::Present`] in `sources`. Whatever was verified is written
    /// before an error is returned.
    pub(super) fn stream_segment<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        index: &ChunkIndex,
        segment: &SegmentEntry,
        sources: &mut [ChunkSource],
        body: SegmentBody<'_>,
        progress: &mut Progress,
    ) -> Result<()> {
        let entries = index.entries();
        let chunks = segment.chunk_range();
        let first = entries[chunks.start].image_offset;
        let (url, target) = (body.url, body.target);
        let report = |source| Error::Chunk {
            target: target.to_string(),
            url: url.to_string(),
            source,
        };
        let mut out = RunWriter::new(self.region());
        let result = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
            let lengths: Vec<u64> = entries[chunks.clone()].iter().map(|e| e.length).collect();
            scope.spawn(move || decode(body, first, &lengths, tx));
            let mut fetched = 0u64;
            for i in chunks.clone() {
                let chunk = rx.recv().map_err(|_| Error::Internal {
                    what: "the segment's decoding thread stopped without a result".into(),
                })??;
                let entry = &entries[i];
                let found: [u8; 32] = Sha256::digest(&chunk).into();
                if found != entry.sha256 {
                    return Err(report(IndexError::ChunkHash {
                        offset: entry.image_offset,
                        expected: hex::encode(entry.sha256),
                        found: hex::encode(found),
                    }));
                }
                out.put(device, entry.image_offset, &chunk)?;
                self.placed(i, entry);
                sources[i] = ChunkSource::Present;
                self.done += entry.length;
                // The frame's bytes, counted as the chunks it holds are placed.
                let share = segment.frame_length * (i + 1 - chunks.start) as u64 / segment.chunks;
                self.fetched += share - fetched;
                fetched = share;
                self.wrote(device, Some(&mut out), entry.length)?;
                progress.update(self.done, self.fetched);
            }
            // The decoder's last word: the frame ended with the last chunk.
            rx.recv().map_err(|_| Error::Internal {
                what: "the segment's decoding thread stopped without a result".into(),
            })??;
            Ok(())
        });
        out.flush(device)?;
        result
    }
}

/// The decoding thread: sends each chunk's bytes (of `lengths`, from image offset `first`), then
/// an empty buffer once the frame has ended exactly there; stops at the first error.
fn decode(
    mut body: SegmentBody<'_>,
    first: u64,
    lengths: &[u64],
    tx: mpsc::SyncSender<Result<Vec<u8>>>,
) {
    let mut decoder = match SegmentDecoder::new(&mut body, first) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let mut offset = first;
    for &length in lengths {
        let mut chunk = vec![0u8; usize::try_from(length).unwrap_or(0)];
        let r = decoder.fill(&mut chunk, offset).map(|()| chunk);
        let failed = r.is_err();
        if tx.send(r).is_err() || failed {
            return;
        }
        offset += length;
    }
    let _ = tx.send(decoder.finish(offset).map(|()| Vec::new()));
}

/// A streaming zstd decoder over a response body, its window bounded by
/// [`SEGMENT_WINDOW_LOG`] (the memory the format lets a segment need).
struct SegmentDecoder<'b, 's> {
    body: &'b mut SegmentBody<'s>,
    decoder: Decoder<'static>,
    input: Vec<u8>,
    pos: usize,
    len: usize,
    /// zstd said the frame is complete.
    ended: bool,
}

impl<'b, 's> SegmentDecoder<'b, 's> {
    fn new(body: &'b mut SegmentBody<'s>, offset: u64) -> Result<Self> {
        let bad = |_| IndexError::Decompress {
            offset,
            reason: "zstd cannot make a decoder",
        };
        let mut decoder = Decoder::new().map_err(bad).map_err(|e| body.error(e))?;
        (decoder.set_parameter(DParameter::WindowLogMax(SEGMENT_WINDOW_LOG)))
            .map_err(bad)
            .map_err(|e| body.error(e))?;
        Ok(SegmentDecoder {
            body,
            decoder,
            input: vec![0; INPUT_BYTES],
            pos: 0,
            len: 0,
            ended: false,
        })
    }

    /// Decodes exactly `out.len()` bytes (the chunk at image offset `offset`).
    fn fill(&mut self, out: &mut [u8], offset: u64) -> Result<()> {
        let mut written = 0;
        while written < out.len() {
            if self.ended {
                return Err(self.body.error(IndexError::Decompress {
                    offset,
                    reason: "the segment's frame ends before its chunks do",
                }));
            }
            written += self.step(&mut out[written..], offset)?;
        }
        Ok(())
    }

    /// One call of the decoder, with more input first when needed: the bytes it wrote.
    fn step(&mut self, out: &mut [u8], offset: u64) -> Result<usize> {
        self.refill(offset)?;
        let mut input = InBuffer::around(&self.input[self.pos..self.len]);
        let mut output = OutBuffer::around(out);
        let hint = self.decoder.run(&mut input, &mut output).map_err(|_| {
            self.body.error(IndexError::Decompress {
                offset,
                reason: "the segment's frame does not decode",
            })
        })?;
        self.pos += input.pos();
        self.ended = hint == 0;
        Ok(output.pos())
    }

    /// Checks that the frame ends right after the last chunk (at image offset `offset`).
    fn finish(&mut self, offset: u64) -> Result<()> {
        let mut spare = [0u8; 1];
        while !self.ended {
            if self.step(&mut spare, offset)? > 0 {
                return Err(self.body.error(IndexError::Decompress {
                    offset,
                    reason: "the segment's frame holds more than its chunks",
                }));
            }
        }
        Ok(())
    }

    /// More input when all read so far was consumed; the body ending first is an error.
    fn refill(&mut self, offset: u64) -> Result<()> {
        if self.pos < self.len {
            return Ok(());
        }
        let n = self.body.stream.read(&mut self.input)?;
        if n == 0 {
            return Err(self.body.error(IndexError::Decompress {
                offset,
                reason: "the segment's response ended inside its frame",
            }));
        }
        (self.pos, self.len) = (0, n);
        Ok(())
    }
}
