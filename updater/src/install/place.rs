//! How the place step gets each chunk: copied from the running slot, or streamed from the
//! bundle with coalesced Range requests, retried from the first chunk still missing, moving
//! between mirrors by [`crate::mirrors::Failover`]'s rule.

use flipside_contract::index::FetchRange;

use super::parts::Placement;
use super::steps::{Run, SeedImage};
use super::writer::{Body, Writer};
use std::time::Duration;

use crate::config::{Location, NetworkPolicy};
use crate::device::ReadBack;
use crate::error::{Error, Result};
use crate::http::is_retryable;
use crate::mirrors::Failover;
use crate::plan::ChunkSource;
use crate::verified::{boot_id, trusted, RunDir, RunningCheck, Verified};

impl<B: ReadBack> Run<'_, B> {
    /// Whether copies from the running part may skip their hash ([`crate::verified`]): this
    /// boot's record says the part holds `seed`, else (once per boot) the part is read whole
    /// past the page cache, checked against `seed` and the result recorded. A part that does
    /// not hold `seed` is not trusted: each copy is then checked.
    pub(super) fn check_running(&mut self, part: &Placement, seed: SeedImage) -> Result<bool> {
        let policy = self.config.update.running_check;
        let run = RunDir::new(&self.config.device.run_dir);
        let now = Verified {
            disk: self.device.path().to_path_buf(),
            image_sha256: hex::encode(seed.sha256),
            boot_id: boot_id(),
        };
        if trusted(policy, run.get(part.seed).as_ref(), &now) {
            log::info!(
                "{} was checked whole in this boot: copies from it are not re-hashed",
                part.seed
            );
            return Ok(true);
        }
        if policy == RunningCheck::EveryInstall || seed.length > self.device.slot_len(part.seed) {
            return Ok(false);
        }
        self.progress.phase("check-running", seed.length);
        let progress = &mut self.progress;
        let (sha, _) = self.device.hash_slot_uncached(
            part.seed,
            seed.length,
            self.config.device.readback,
            &mut |n| progress.update(n, 0),
        )?;
        self.progress.finish();
        if sha != seed.sha256 {
            log::warn!(
                "{} does not hold the image its index describes: each chunk copied from it is checked",
                part.seed
            );
            return Ok(false);
        }
        log::info!(
            "{} checked whole: trusted for the rest of this boot",
            part.seed
        );
        run.set(part.seed, &now);
        Ok(true)
    }

    /// Copies chunks the running slot's same part holds; a chunk whose bytes there do not match
    /// (the seed index is only a hint) falls back to a download. When `trusted`
    /// ([`Run::check_running`]), the running part holds the seed's image and copies are not
    /// re-hashed (the read-back still checks the result).
    pub(super) fn copy_from_running(
        &mut self,
        part: &Placement,
        sources: &mut [ChunkSource],
        w: &mut Writer,
        trusted: bool,
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
            if fits && (trusted || entry.matches(&buf)) {
                (self.device).write_slot(part.region, entry.image_offset, &buf)?;
                w.placed(i, entry);
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
        let mut attempts = Attempts::new(locations.len());
        loop {
            let Some(first) = range.chunks.clone().find(|&i| wanted[i]) else {
                return Ok(());
            };
            let before = w.done;
            let location = &locations[attempts.failover.current()];
            let e = match self.stream_from(part, range, first, wanted, location, w) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let policy = &self.config.network;
            let Some((next, pause)) = attempts.failed(&e, w.done > before, policy) else {
                return Err(e);
            };
            log::warn!(
                "{e}; retrying from chunk {} via {} in {pause:?} (attempt {}/{})",
                range.chunks.clone().find(|&i| wanted[i]).unwrap_or(first),
                locations[next],
                attempts.failures,
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

/// The retries of one range: which mirror next ([`Failover`]), and the failures in a row
/// without progress, bounded by `network.retries` (progress starts the count again, so a slow
/// but moving download is never given up).
struct Attempts {
    failover: Failover,
    failures: u32,
}

impl Attempts {
    fn new(mirrors: usize) -> Attempts {
        Attempts {
            failover: Failover::new(mirrors),
            failures: 0,
        }
    }

    /// After an attempt failed with `e` (having placed chunks when `progressed`): the mirror to
    /// ask next and the pause before, or `None` to give up. A failure no retry can fix
    /// excludes its mirror and moves on at once; a transient one backs off.
    fn failed(
        &mut self,
        e: &Error,
        progressed: bool,
        policy: &NetworkPolicy,
    ) -> Option<(usize, Duration)> {
        let retry = is_retryable(e);
        if progressed {
            self.failures = 0;
        } else if retry {
            self.failures += 1;
        }
        let next = self.failover.failed(!retry)?;
        if self.failures > policy.retries {
            return None;
        }
        let pause = match retry {
            true => policy.backoff(self.failures.max(1)),
            false => Duration::ZERO,
        };
        Some((next, pause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Error {
        Error::HttpStatus {
            url: String::new(),
            status,
            hint: "",
        }
    }

    #[test]
    fn transient_failures_back_off_within_the_budget_and_progress_resets_it() {
        let policy = NetworkPolicy {
            retries: 2,
            ..NetworkPolicy::default()
        };
        let mut a = Attempts::new(1);
        let (m, pause) = a.failed(&status(503), false, &policy).unwrap();
        assert_eq!((m, pause), (0, policy.backoff(1)));
        assert_eq!(
            a.failed(&status(503), false, &policy).unwrap().1,
            policy.backoff(2)
        );
        assert_eq!(
            a.failed(&status(503), true, &policy).unwrap().1,
            policy.backoff(1)
        );
        a.failed(&status(503), false, &policy).unwrap();
        a.failed(&status(503), false, &policy).unwrap();
        assert_eq!(
            a.failed(&status(503), false, &policy),
            None,
            "3 in a row > 2"
        );
    }

    #[test]
    fn a_permanent_failure_moves_on_at_once_and_never_returns() {
        let policy = NetworkPolicy::default();
        let mut a = Attempts::new(2);
        assert_eq!(
            a.failed(&status(404), false, &policy),
            Some((1, Duration::ZERO))
        );
        assert_eq!(a.failed(&status(503), false, &policy).unwrap().0, 1);
        assert_eq!(a.failed(&status(404), false, &policy), None);
    }
}
