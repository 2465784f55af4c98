//! How the place step gets each chunk: copied from the running slot, or streamed from the
//! bundle with coalesced Range requests, retried from the first chunk still missing, moving
//! between mirrors by [`crate::mirrors::Failover`]'s rule.

use flipside_contract::index::FetchRange;

use super::parts::Placement;
use super::steps::Run;
use super::writer::{Body, Writer};
use crate::config::Location;
use crate::device::ReadBack;
use crate::error::{Error, Result};
use crate::http::is_retryable;
use crate::mirrors::Failover;
use crate::plan::ChunkSource;

impl<B: ReadBack> Run<'_, B> {
    /// Copies chunks the running slot's same part holds; a chunk whose bytes there do not match
    /// (the seed index is only a hint) falls back to a download.
    pub(super) fn copy_from_running(
        &mut self,
        part: &Placement,
        sources: &mut [ChunkSource],
        w: &mut Writer,
    ) -> Result<()> {
        let running_length = self.device.slot_len(part.seed);
        let mut buf = Vec::new();
        for (i, entry) in part.index.iter().enumerate() {
            let ChunkSource::Copy { from } = sources[i] else {
                continue;
            };
            let fits = (from.checked_add(entry.length)).is_some_and(|end| end <= running_length);
            buf.resize(usize::try_from(entry.length).unwrap_or(0), 0);
            if fits {
                self.device.read_slot(part.seed, from, &mut buf)?;
            }
            if fits && entry.matches(&buf) {
                (self.device).write_slot(part.region, entry.image_offset, &buf)?;
                w.copied += entry.length;
                w.done += entry.length;
                w.wrote(self.device, None, entry.length)?;
                self.progress.update(w.done, w.fetched);
            } else {
                sources[i] = ChunkSource::Fetch;
            }
        }
        Ok(())
    }

    /// Streams the frames of every chunk still missing. A server that ignores Range requests
    /// would send the bundle from its start for every range: once one is seen, everything left
    /// comes in one request, reading past what is not wanted.
    pub(super) fn fetch_missing(
        &mut self,
        part: &Placement,
        sources: &[ChunkSource],
        w: &mut Writer,
    ) -> Result<()> {
        let mut wanted: Vec<bool> = sources.iter().map(|&s| s == ChunkSource::Fetch).collect();
        let ranges = (part.index).fetch_ranges(|i, _| wanted[i], self.config.network.range_gap);
        if ranges.is_empty() {
            return Ok(());
        }
        let locations = self.source.target_locations(&part.bundle);
        if locations.is_empty() {
            return Err(Error::Internal {
                what: format!("the source gives no location for {}", part.bundle.name),
            });
        }
        for (k, range) in ranges.iter().enumerate() {
            if k > 0 && locations.iter().any(|l| self.source.ignores_range(l)) {
                let rest = FetchRange::spanning(&ranges[k..]);
                log::warn!(
                    "a mirror answers Range requests with the whole file: the {} remaining \
                     ranges of {} come in one request of {} bytes; a server honouring Range \
                     saves traffic",
                    ranges.len() - k,
                    part.bundle.name,
                    rest.bundle.end
                );
                return self.fetch_range(part, &rest, &mut wanted, &locations, w);
            }
            self.fetch_range(part, range, &mut wanted, &locations, w)?;
        }
        Ok(())
    }

    /// One coalesced run of frames, with bounded retries: each attempt asks for the bytes from
    /// the first chunk still wanted; a mirror that answers with a permanent error or bad data
    /// is not asked again; progress resets the count of failures.
    fn fetch_range(
        &mut self,
        part: &Placement,
        range: &FetchRange,
        wanted: &mut [bool],
        locations: &[Location],
        w: &mut Writer,
    ) -> Result<()> {
        let policy = &self.config.network;
        let mut failover = Failover::new(locations.len());
        let mut failures = 0u32;
        loop {
            let Some(first) = range.chunks.clone().find(|&i| wanted[i]) else {
                return Ok(());
            };
            let before = w.done;
            let location = &locations[failover.current()];
            let e = match self.stream_from(part, range, first, wanted, location, w) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let retry = is_retryable(&e);
            if w.done > before {
                failures = 0;
            } else if retry {
                failures += 1;
            }
            let next = match failover.failed(!retry) {
                Some(m) if failures <= policy.retries => m,
                _ => return Err(e),
            };
            let pause = match retry {
                true => policy.backoff(failures.max(1)),
                false => Default::default(),
            };
            log::warn!(
                "{e}; retrying from chunk {} via {} in {pause:?} (attempt {failures}/{})",
                range.chunks.clone().find(|&i| wanted[i]).unwrap_or(first),
                locations[next],
                policy.retries
            );
            std::thread::sleep(pause);
        }
    }

    /// One attempt: the frames from chunk `first` to the end of `range`, from `location`.
    fn stream_from(
        &mut self,
        part: &Placement,
        range: &FetchRange,
        first: usize,
        wanted: &mut [bool],
        location: &Location,
        w: &mut Writer,
    ) -> Result<()> {
        let bytes = part.index.entries()[first].frame_offset..range.bundle.end;
        let mut stream = (self.source).open_range(location, bytes, part.bundle.length)?;
        let chunks = first..range.chunks.end;
        let body = Body {
            stream: stream.as_mut(),
            url: location.to_string(),
        };
        w.stream(
            self.device,
            &part.index,
            chunks,
            wanted,
            body,
            &mut self.progress,
        )
    }
}
