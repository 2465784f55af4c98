//! How the place step rebuilds chunks from delta frames: the frames of the chunks planned as
//! [`ChunkSource::Delta`] are fetched with coalesced Range requests from the bundle's delta
//! area, each decoded against its base (consecutive chunks) read from the running slot. Every
//! chunk of the base is checked against the running slot's index before it is used and the
//! result against the chunk's sha256 before it is written
//! ([`ChunkVerifier::verify_delta_into`]), so a wrong base, a bad
//! frame or a failed request only costs the full frame: those chunks fall back to
//! [`ChunkSource::Fetch`], which has the retries and the mirror failover.

use std::ops::Range;

use std::collections::HashMap;

use flipside_contract::index::{ChunkEntry, ChunkVerifier};

use super::parts::Placement;
use super::steps::Run;
use super::writer::Writer;
use crate::device::ReadBack;
use crate::error::{Error, Result};
use crate::http::{read_full, ByteStream};
use crate::plan::ChunkSource;

/// One chunk to rebuild: its number, its delta's number, its base's offset in the running slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    chunk: usize,
    delta: usize,
    from: u64,
}

impl<B: ReadBack> Run<'_, B> {
    /// Rebuilds the chunks planned from delta frames, `bases` holding the running slot's chunks
    /// each delta's base is made of; what fails goes back to a download.
    pub(super) fn fetch_deltas(
        &mut self,
        part: &Placement,
        sources: &mut [ChunkSource],
        bases: &HashMap<usize, Vec<ChunkEntry>>,
        w: &mut Writer,
    ) -> Result<()> {
        let mut wanted = Vec::new();
        for (chunk, s) in sources.iter_mut().enumerate() {
            if let ChunkSource::Delta { delta, from } = *s {
                match bases.contains_key(&delta) {
                    true => wanted.push(Wanted { chunk, delta, from }),
                    false => *s = ChunkSource::Fetch,
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let frames: Vec<Range<u64>> = (wanted.iter())
            .map(|x| part.index.deltas()[x.delta].frame_range())
            .collect();
        let mut verifier = ChunkVerifier::new();
        for run in runs(&frames, self.config.network.range_gap) {
            let run = &wanted[run];
            let done = self.delta_run(part, run, bases, &mut verifier, w);
            let (rebuilt, failure) = match done {
                Ok(n) => (n, None),
                Err(stop) => (stop.0, Some(stop.1)),
            };
            if let Some(e) = failure {
                log::warn!(
                    "{e}; the {} chunks left of this run of delta frames come as full frames",
                    run.len() - rebuilt
                );
                for x in &run[rebuilt..] {
                    sources[x.chunk] = ChunkSource::Fetch;
                }
            }
        }
        Ok(())
    }

    /// One Range request over the delta frames of `run` (in bundle order): each frame is read,
    /// decoded against its base and written. Returns how many chunks were rebuilt, with the
    /// error that stopped it (boxed: the error path is the rare one).
    fn delta_run(
        &mut self,
        part: &Placement,
        run: &[Wanted],
        bases: &HashMap<usize, Vec<ChunkEntry>>,
        verifier: &mut ChunkVerifier,
        w: &mut Writer,
    ) -> std::result::Result<usize, Box<(usize, Error)>> {
        let deltas = part.index.deltas();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(0);
        };
        let bytes = deltas[first.delta].frame_offset..deltas[last.delta].frame_range().end;
        let location = (self
            .source
            .target_locations(&part.bundle)
            .into_iter()
            .next())
        .ok_or_else(|| {
            Box::new((
                0,
                Error::Internal {
                    what: format!("the source gives no location for {}", part.bundle.name),
                },
            ))
        })?;
        let url = location.to_string();
        let mut stream = (self.source)
            .open_range(&location, bytes.clone(), part.bundle.length)
            .map_err(|e| Box::new((0, e)))?;
        let running_length = self.device.slot_len(part.seed);
        let (mut frame, mut base, mut chunk) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = bytes.start;
        for (n, x) in run.iter().enumerate() {
            let delta = &deltas[x.delta];
            let entry = &part.index.entries()[x.chunk];
            let fail = |e| Box::new((n, e));
            skip(stream.as_mut(), delta.frame_offset - at, &url).map_err(fail)?;
            frame.resize(usize::try_from(delta.frame_length).unwrap_or(0), 0);
            read_full(stream.as_mut(), &mut frame, &url).map_err(fail)?;
            at = delta.frame_range().end;
            w.fetched += delta.frame_length;
            // The base is read from the running slot, then checked chunk by chunk against the
            // running slot's index by the verifier before zstd sees it.
            let fits = (x.from.checked_add(delta.base_length)).is_some_and(|e| e <= running_length);
            if !fits {
                return Err(fail(Error::Internal {
                    what: format!("the base of chunk {} lies past the running slot", x.chunk),
                }));
            }
            base.resize(usize::try_from(delta.base_length).unwrap_or(0), 0);
            (self.device.read_slot(part.seed, x.from, &mut base)).map_err(fail)?;
            let base_chunks = bases.get(&x.delta).map_or(&[][..], Vec::as_slice);
            (verifier.verify_delta_into(entry, delta, base_chunks, &base, &frame, &mut chunk))
                .map_err(|source| {
                    fail(Error::Chunk {
                        target: part.bundle.name.to_string(),
                        url: url.clone(),
                        source,
                    })
                })?;
            (self
                .device
                .write_slot(part.region, entry.image_offset, &chunk))
            .map_err(fail)?;
            w.done += entry.length;
            w.wrote(self.device, None, entry.length).map_err(fail)?;
            self.progress.update(w.done, w.fetched);
        }
        Ok(run.len())
    }
}

/// Reads past `n` bytes of `stream` (a coalesced gap).
fn skip(stream: &mut dyn ByteStream, n: u64, url: &str) -> Result<()> {
    let mut buf = vec![0u8; usize::try_from(n.min(64 << 10)).unwrap_or(0)];
    let mut left = n;
    while left > 0 {
        let k = usize::try_from(left.min(buf.len() as u64)).unwrap_or(0);
        read_full(stream, &mut buf[..k], url)?;
        left -= k as u64;
    }
    Ok(())
}

/// Groups frames (in bundle order) into runs one Range request fetches: a frame joins the run
/// before it when at most `max_gap` bytes lie between them. Returns ranges of positions.
fn runs(frames: &[Range<u64>], max_gap: u64) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        match out.last_mut() {
            Some(run) if f.start.saturating_sub(frames[run.end - 1].end) <= max_gap => {
                run.end = k + 1
            }
            _ => out.push(k..k + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_coalesce_adjacent_frames_and_small_gaps() {
        assert_eq!(runs(&[], 10), Vec::<Range<usize>>::new());
        let frames = [0..10, 10..20, 25..30, 100..110, 111..120];
        assert_eq!(runs(&frames, 0), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(runs(&frames, 5), vec![0..3, 3..5]);
        assert_eq!(runs(&frames, 70), vec![0..5]);
    }
}
