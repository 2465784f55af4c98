//! Read-behind: a part being written is read back past the page cache one synced segment at a
//! time, on a thread of its own, while the next segment is written, each chunk checked against
//! the sha256 its index gives. Together the chunks cover the image exactly (the index's rule),
//! so once every chunk has read back right, every byte on the medium is the image's: the same
//! proof as hashing the whole part at the end, without a pass of its own.
//!
//! A medium offers it through [`super::ReadBack::uncached`]; one that cannot (memory) is read
//! back whole at the end instead.

use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::{Readback, Region};
use crate::error::{Error, Result};

/// Alignment of the blocks read (covers 512- and 4096-byte logical sectors, as `O_DIRECT`
/// needs).
pub const ALIGN: u64 = 4096;
/// Bytes per read.
const BLOCK: usize = 1 << 20;

/// A medium read past its cache, from the read-behind thread.
pub trait Uncached: Send {
    /// How it reads back.
    fn readback(&self) -> Readback;

    /// Reads the block at `at` (a multiple of [`ALIGN`]) into `buf` (aligned to [`ALIGN`], its
    /// length a multiple of it): the bytes read, fewer only at the end of the medium.
    fn read_block(&mut self, at: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// A chunk written and synced: its number in the index, its bytes in the part and its sha256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub chunk: usize,
    pub range: Range<u64>,
    pub sha256: [u8; 32],
}

/// What the read-behind checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Every chunk of the part was checked once.
    pub complete: bool,
    pub bytes: u64,
    pub readback: Readback,
}

/// The read-behind of one part: segments go in with [`ReadBehind::check`], the verdict comes
/// out of [`ReadBehind::finish`].
pub struct ReadBehind {
    tx: Option<mpsc::Sender<Vec<Expected>>>,
    thread: Option<JoinHandle<Result<Checked>>>,
}

/// Where the part lies on the medium and how errors name it.
pub(super) struct Place {
    pub(super) region: Region,
    pub(super) disk: PathBuf,
    /// Medium offset of the part's byte 0.
    pub(super) base: u64,
    /// Bytes of the part that may be read (its partition).
    pub(super) length: u64,
    /// Chunks in the part's index.
    pub(super) chunks: usize,
}

impl ReadBehind {
    pub(super) fn start(medium: Box<dyn Uncached>, place: Place) -> ReadBehind {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || run(medium, &place, rx));
        ReadBehind {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Chunks now synced: read them back and check them. A thread that already failed keeps
    /// its error for [`ReadBehind::finish`].
    pub fn check(&self, segment: Vec<Expected>) {
        if let Some(tx) = &self.tx {
            if !segment.is_empty() {
                let _ = tx.send(segment);
            }
        }
    }

    /// Waits for every segment to be checked: the first chunk that did not read back as
    /// written, or what was checked.
    pub fn finish(mut self) -> Result<Checked> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(Error::Internal {
                what: "the read-back thread stopped without a verdict".into(),
            }),
        }
    }
}

impl Drop for ReadBehind {
    /// An install that failed stops the thread and waits for it.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut medium: Box<dyn Uncached>,
    place: &Place,
    rx: mpsc::Receiver<Vec<Expected>>,
) -> Result<Checked> {
    let mut buf = super::file::AlignedBuf::new(BLOCK);
    let mut seen = vec![false; place.chunks];
    let (mut bytes, mut count) = (0u64, 0usize);
    for mut segment in rx {
        segment.sort_by_key(|e| e.range.start);
        for e in &segment {
            match seen.get_mut(e.chunk) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(Error::Internal {
                        what: format!("chunk {} was handed to the read-back twice", e.chunk),
                    })
                }
            }
            bytes += e.range.end - e.range.start;
            count += 1;
        }
        for run in contiguous(&segment) {
            check_run(medium.as_mut(), place, run, buf.as_mut())?;
        }
    }
    Ok(Checked {
        complete: count == place.chunks,
        bytes,
        readback: medium.readback(),
    })
}

/// The segment (sorted) split into runs of adjacent chunks, each read in one sweep.
fn contiguous(segment: &[Expected]) -> impl Iterator<Item = &[Expected]> {
    segment.chunk_by(|a, b| a.range.end == b.range.start)
}

/// Reads the blocks covering `run` and checks each chunk's sha256.
fn check_run(
    medium: &mut dyn Uncached,
    place: &Place,
    run: &[Expected],
    buf: &mut [u8],
) -> Result<()> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(());
    };
    if last.range.end > place.length {
        return Err(Error::OutOfSlot {
            op: "read back",
            region: place.region,
            offset: first.range.start,
            len: last.range.end - first.range.start,
            slot_length: place.length,
        });
    }
    let (start, end) = (place.base + first.range.start, place.base + last.range.end);
    let mut at = start / ALIGN * ALIGN;
    let mut chunks = run.iter().peekable();
    let mut hasher = Sha256::new();
    while at < end {
        let want = (BLOCK as u64).min((end - at).div_ceil(ALIGN) * ALIGN) as usize;
        let io_err = |source| Error::DiskIo {
            op: "read back",
            disk: place.disk.clone(),
            offset: at,
            len: want as u64,
            source,
        };
        let n = medium.read_block(at, &mut buf[..want]).map_err(io_err)?;
        if n == 0 || (n < want && at + (n as u64) < end) {
            return Err(io_err(io::Error::from(io::ErrorKind::UnexpectedEof)));
        }
        let mut pos = at.max(start);
        let stop = (at + n as u64).min(end);
        while pos < stop {
            let Some(chunk) = chunks.peek() else { break };
            let chunk_end = place.base + chunk.range.end;
            let upto = chunk_end.min(stop);
            hasher.update(&buf[(pos - at) as usize..(upto - at) as usize]);
            pos = upto;
            if pos == chunk_end {
                let found: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
                if found != chunk.sha256 {
                    return Err(Error::ReadBackChunk {
                        region: place.region,
                        offset: chunk.range.start,
                        expected: hex::encode(chunk.sha256),
                        found: hex::encode(found),
                    });
                }
                chunks.next();
            }
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipside_bootloader_hooks::Slot;

    /// A medium in memory whose bytes can change while the thread runs.
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Uncached for Shared {
        fn readback(&self) -> Readback {
            Readback::Direct
        }
        fn read_block(&mut self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
            let bytes = self.0.lock().unwrap();
            let at = (at as usize).min(bytes.len());
            let n = buf.len().min(bytes.len() - at);
            buf[..n].copy_from_slice(&bytes[at..at + n]);
            Ok(n)
        }
    }

    /// `n` chunks of odd lengths over pseudo-random bytes at medium offset `base`.
    fn world(base: u64, n: usize) -> (Vec<u8>, Vec<Expected>) {
        let mut x = 7u64;
        let total: u64 = (0..n as u64).map(|i| 1000 + i * 777).sum();
        let mut bytes = vec![0u8; (base + total) as usize + 5000];
        for b in &mut bytes {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
        let mut at = 0;
        let chunks = (0..n)
            .map(|i| {
                let len = 1000 + i as u64 * 777;
                let range = at..at + len;
                at += len;
                let s = (base + range.start) as usize..(base + range.end) as usize;
                Expected {
                    chunk: i,
                    range,
                    sha256: Sha256::digest(&bytes[s]).into(),
                }
            })
            .collect();
        (bytes, chunks)
    }

    fn start(bytes: Vec<u8>, base: u64, chunks: usize) -> ReadBehind {
        let length = bytes.len() as u64 - base;
        let medium = Shared(std::sync::Arc::new(std::sync::Mutex::new(bytes)));
        ReadBehind::start(
            Box::new(medium),
            Place {
                region: Region::from(Slot::B),
                disk: "memory".into(),
                base,
                length,
                chunks,
            },
        )
    }

    #[test]
    fn segments_in_any_order_check_every_chunk_once() {
        let base = 3 * 4096 + 512;
        let (bytes, chunks) = world(base, 40);
        let rb = start(bytes, base, chunks.len());
        // Out of order and with gaps, as a delta's copies and downloads arrive.
        rb.check(chunks.iter().step_by(2).cloned().collect());
        rb.check(chunks.iter().skip(1).step_by(2).rev().cloned().collect());
        let checked = rb.finish().unwrap();
        assert!(checked.complete);
        assert_eq!(
            checked.bytes,
            chunks
                .iter()
                .map(|e| e.range.end - e.range.start)
                .sum::<u64>()
        );
        assert_eq!(checked.readback, Readback::Direct);
    }

    #[test]
    fn a_missing_chunk_leaves_it_incomplete_and_a_repeated_one_is_refused() {
        let (bytes, chunks) = world(0, 5);
        let rb = start(bytes.clone(), 0, chunks.len());
        rb.check(chunks[..4].to_vec());
        assert!(!rb.finish().unwrap().complete);
        let rb = start(bytes, 0, chunks.len());
        rb.check(chunks[..2].to_vec());
        rb.check(chunks[1..].to_vec());
        assert!(matches!(rb.finish(), Err(Error::Internal { .. })));
    }

    #[test]
    fn a_changed_byte_names_its_chunk() {
        let base = 4096;
        let (mut bytes, chunks) = world(base, 10);
        let bad = &chunks[6];
        bytes[(base + bad.range.start + 3) as usize] ^= 1;
        let rb = start(bytes, base, chunks.len());
        rb.check(chunks.clone());
        match rb.finish() {
            Err(Error::ReadBackChunk {
                offset, expected, ..
            }) => {
                assert_eq!(offset, bad.range.start);
                assert_eq!(expected, hex::encode(bad.sha256));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunks_past_the_part_or_the_medium_are_errors() {
        let (bytes, chunks) = world(0, 3);
        let short = bytes[..(chunks[2].range.end - 10) as usize].to_vec();
        let rb = start(short, 0, 3);
        rb.check(chunks.clone());
        assert!(matches!(rb.finish(), Err(Error::OutOfSlot { .. })));
        // The medium ends early though the part claims more: a short read.
        let len = bytes.len() as u64;
        let mut rb_bytes = bytes[..(chunks[2].range.end - 10) as usize].to_vec();
        rb_bytes.truncate(rb_bytes.len());
        let medium = Shared(std::sync::Arc::new(std::sync::Mutex::new(rb_bytes)));
        let rb = ReadBehind::start(
            Box::new(medium),
            Place {
                region: Region::from(Slot::B),
                disk: "memory".into(),
                base: 0,
                length: len,
                chunks: 3,
            },
        );
        rb.check(chunks);
        assert!(matches!(rb.finish(), Err(Error::DiskIo { .. })));
    }
}
