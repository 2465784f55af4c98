//! Writing a part: chunks verified in parallel and written in order through a coalescing
//! buffer, counted, with the partition synced on the checkpoint's schedule.

use std::ops::Range;
use std::sync::mpsc;

use flipside_contract::index::{ChunkEntry, ChunkIndex, ChunkVerifier};

use crate::device::{Device, Expected, ReadBack, ReadBehind, Region};
use crate::durable::Checkpoint;
use crate::error::{Error, Result};
use crate::http::{read_full, ByteStream};
use crate::plan::ChunkSource;
use crate::progress::Progress;

use super::parts::Counts;

/// Frames queued for each verifier.
const FRAMES_IN_FLIGHT: usize = 4;
/// Verified chunks queued from each verifier.
const CHUNKS_IN_FLIGHT: usize = 2;
/// Bytes gathered before a write.
const RUN_BYTES: usize = 1 << 20;
/// Page size writes are aligned to.
const PAGE: u64 = 4096;

/// Image bytes of the chunks whose source `f` accepts.
pub(super) fn sum_len(
    index: &ChunkIndex,
    sources: &[ChunkSource],
    f: impl Fn(ChunkSource) -> bool,
) -> u64 {
    (index.iter().zip(sources))
        .filter(|(_, &s)| f(s))
        .map(|(e, _)| e.length)
        .sum()
}

/// A response body and where it comes from (the URL a failed chunk is reported with).
pub(super) struct Body<'s> {
    pub(super) stream: &'s mut dyn ByteStream,
    pub(super) url: String,
}

/// Verifies and writes chunks from a stream of frames, counts, and syncs on schedule.
pub(super) struct Writer<'c> {
    target: String,
    region: Region,
    /// Image bytes placed: every chunk below this count has been handed to the device.
    pub(super) done: u64,
    pub(super) fetched: u64,
    pub(super) reused: u64,
    pub(super) copied: u64,
    checkpoint: &'c mut Checkpoint,
    /// The part's read-behind, if the medium has one: each segment goes to it once synced.
    pub(super) behind: Option<ReadBehind>,
    /// Chunks placed since the last sync.
    segment: Vec<Expected>,
}

impl Writer<'_> {
    pub(super) fn new<'c>(
        region: Region,
        target: &str,
        checkpoint: &'c mut Checkpoint,
    ) -> Writer<'c> {
        Writer {
            target: target.to_string(),
            region,
            done: 0,
            fetched: 0,
            reused: 0,
            copied: 0,
            checkpoint,
            behind: None,
            segment: Vec::new(),
        }
    }

    /// Chunk `i` was handed to the device (or is already on it): read back after the next
    /// sync.
    pub(super) fn placed(&mut self, i: usize, entry: &ChunkEntry) {
        if self.behind.is_some() {
            self.segment.push(Expected {
                chunk: i,
                range: entry.image_range(),
                sha256: entry.sha256,
            });
        }
    }

    /// The slot part written.
    pub(super) fn region(&self) -> Region {
        self.region
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            fetched: self.fetched,
            reused: self.reused,
            copied: self.copied,
        }
    }

    /// `n` more bytes were handed to the device (or to `out`, which buffers): syncs when due.
    pub(super) fn wrote<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        out: Option<&mut RunWriter>,
        n: u64,
    ) -> Result<()> {
        if self.checkpoint.wrote(n) {
            self.sync(device, out)?;
        }
        Ok(())
    }

    /// Syncs if anything was written since the last sync, or placed chunks wait for their
    /// read-back (chunks the slot already held).
    pub(super) fn sync_pending<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        out: Option<&mut RunWriter>,
    ) -> Result<()> {
        if self.checkpoint.pending() || !self.segment.is_empty() {
            self.sync(device, out)?;
        }
        Ok(())
    }

    fn sync<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        out: Option<&mut RunWriter>,
    ) -> Result<()> {
        if let Some(out) = out {
            out.flush(device)?;
        }
        self.checkpoint.sync(device, self.region.part, self.done)?;
        if let Some(behind) = &self.behind {
            behind.check(std::mem::take(&mut self.segment));
        }
        Ok(())
    }

    /// Reads the frames of `chunks` in order from `body`; each wanted one is verified, then
    /// written at its offset; unwanted ones (coalesced gaps) are read past.
    ///
    /// Three stages with bounded channels, so memory stays bounded: a network thread reads
    /// frames and deals them round-robin to [`verifiers`] threads, which decompress and check
    /// them (each chunk is verified before anything of it is written); this thread takes the
    /// results back in the same order and writes them through a [`RunWriter`]. Whatever was
    /// verified is written before an error is returned.
    pub(super) fn stream<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        index: &ChunkIndex,
        chunks: Range<usize>,
        wanted: &mut [bool],
        body: Body<'_>,
        progress: &mut Progress,
    ) -> Result<()> {
        let entries = index.entries();
        let wanted_now: Vec<bool> = wanted[chunks.clone()].to_vec();
        let n = verifiers();
        let mut out = RunWriter::new(self.region);
        let target = self.target.clone();
        let job = Job {
            entries,
            dictionary: index.dictionary(),
            first: chunks.start,
            wanted: &wanted_now,
            target: &target,
            url: &body.url,
        };
        let result = std::thread::scope(|scope| {
            let (to_verifiers, from_verifiers): (Vec<_>, Vec<_>) =
                (0..n).map(|_| job.spawn_verifier(scope)).unzip();
            job.spawn_reader(scope, chunks.clone(), body.stream, to_verifiers);
            // Leaving this closure drops the receivers, which stops the other threads.
            for (k, _) in chunks.enumerate() {
                let Verified { i, chunk } =
                    from_verifiers[k % n].recv().map_err(|_| Error::Internal {
                        what: "the download threads stopped without a result".into(),
                    })??;
                let entry = &entries[i];
                self.fetched += entry.frame_length;
                if let Some(chunk) = chunk {
                    out.put(device, entry.image_offset, &chunk)?;
                    self.placed(i, entry);
                    wanted[i] = false;
                    self.done += entry.length;
                    self.wrote(device, Some(&mut out), entry.length)?;
                    progress.update(self.done, self.fetched);
                }
            }
            Ok(())
        });
        // Verified chunks still buffered are written whatever happened, so that a retry does
        // not fetch them again.
        out.flush(device)?;
        result
    }
}

type FrameTx = mpsc::SyncSender<Result<(usize, Vec<u8>)>>;
type VerifiedRx = mpsc::Receiver<Result<Verified>>;

/// What the threads of one [`Writer::stream`] share.
#[derive(Clone, Copy)]
struct Job<'j> {
    entries: &'j [ChunkEntry],
    /// The index's zstd dictionary, if its frames were compressed with one.
    dictionary: Option<&'j [u8]>,
    /// Index of the first chunk of the stream.
    first: usize,
    /// Whether each chunk of the stream is wanted, from `first` on.
    wanted: &'j [bool],
    target: &'j str,
    url: &'j str,
}

impl<'j> Job<'j> {
    /// A verifier: decompresses and checks each wanted frame it is dealt, in order; stops at
    /// the first failure (a chunk that does not verify names the URL it came from).
    fn spawn_verifier<'s>(self, scope: &'s std::thread::Scope<'s, '_>) -> (FrameTx, VerifiedRx)
    where
        'j: 's,
    {
        let (frame_tx, frame_rx) = mpsc::sync_channel::<Result<(usize, Vec<u8>)>>(FRAMES_IN_FLIGHT);
        let (done_tx, done_rx) = mpsc::sync_channel::<Result<Verified>>(CHUNKS_IN_FLIGHT);
        scope.spawn(move || {
            let mut verifier = match ChunkVerifier::with_dictionary(self.dictionary) {
                Ok(v) => v,
                Err(source) => {
                    let _ = done_tx.send(Err(self.chunk_error(source)));
                    return;
                }
            };
            for next in frame_rx {
                let verified = next.and_then(|(i, frame)| self.verify(&mut verifier, i, &frame));
                let failed = verified.is_err();
                if done_tx.send(verified).is_err() || failed {
                    return;
                }
            }
        });
        (frame_tx, done_rx)
    }

    fn verify(self, verifier: &mut ChunkVerifier, i: usize, frame: &[u8]) -> Result<Verified> {
        if !self.wanted[i - self.first] {
            return Ok(Verified { i, chunk: None });
        }
        let mut chunk = Vec::new();
        (verifier.verify_into(&self.entries[i], frame, &mut chunk))
            .map_err(|source| self.chunk_error(source))?;
        Ok(Verified {
            i,
            chunk: Some(chunk),
        })
    }

    fn chunk_error(self, source: flipside_contract::index::Error) -> Error {
        Error::Chunk {
            target: self.target.to_string(),
            url: self.url.to_string(),
            source,
        }
    }

    /// The network thread: reads the frames of `chunks` in order, dealt round-robin.
    fn spawn_reader<'s>(
        self,
        scope: &'s std::thread::Scope<'s, '_>,
        chunks: Range<usize>,
        stream: &'s mut dyn ByteStream,
        to_verifiers: Vec<FrameTx>,
    ) where
        'j: 's,
    {
        scope.spawn(move || {
            let n = to_verifiers.len();
            for (k, i) in chunks.enumerate() {
                let len = usize::try_from(self.entries[i].frame_length).unwrap_or(0);
                let mut buf = vec![0u8; len];
                let frame = read_full(stream, &mut buf, self.target).map(|()| (i, buf));
                let failed = frame.is_err();
                if to_verifiers[k % n].send(frame).is_err() || failed {
                    return;
                }
            }
        });
    }
}

/// Coalesces chunks written at consecutive offsets into large writes that end on a page
/// boundary, so the page cache rarely has to read a partly overwritten page first.
pub(super) struct RunWriter {
    region: Region,
    /// Slot offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl RunWriter {
    pub(super) fn new(region: Region) -> RunWriter {
        RunWriter {
            region,
            start: 0,
            buf: Vec::with_capacity(RUN_BYTES + (256 << 10)),
        }
    }

    pub(super) fn put<B: ReadBack>(
        &mut self,
        device: &mut Device<B>,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        if !self.buf.is_empty() && offset != self.start + self.buf.len() as u64 {
            self.flush(device)?;
        }
        if self.buf.is_empty() {
            self.start = offset;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= RUN_BYTES {
            // Write up to the last page boundary; the partial page waits for the next chunk.
            let end = (self.start + self.buf.len() as u64) / PAGE * PAGE;
            let k = usize::try_from(end.saturating_sub(self.start)).unwrap_or(0);
            if k > 0 {
                device.write_slot(self.region, self.start, &self.buf[..k])?;
                self.buf.drain(..k);
                self.start += k as u64;
            }
        }
        Ok(())
    }

    pub(super) fn flush<B: ReadBack>(&mut self, device: &mut Device<B>) -> Result<()> {
        if !self.buf.is_empty() {
            device.write_slot(self.region, self.start, &self.buf)?;
            self.start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

/// A frame checked by a verifier: its chunk's bytes, or `None` for a frame read past.
struct Verified {
    i: usize,
    chunk: Option<Vec<u8>>,
}

/// Verifier threads: one per core, at most four.
fn verifiers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}
