//! `flipside install`: choose the release, then write it into the inactive slot so that nothing
//! unverified ever touches it and no failure leaves it bootable:
//!
//! 1. refuse early: a trial pending, no proven fallback, other hardware, a rollback, an image
//!    larger than the slot, a device with kernel partitions offered a release without a kernel
//!    part (all before any write);
//! 2. fetch the indexes of the release's parts (root image; the kernel part when the device has
//!    kernel partitions), each TUF-verified and bounded by its signed length, and check them
//!    against the release's signed fields;
//! 3. mark the inactive slot P=0,T=0,S=0 and flush, then journal the install;
//! 4. place every chunk of every part (the UKI into the slot's kernel partition, then the root
//!    image): keep the ones an interrupted install already wrote (hash of the partition's
//!    bytes), copy the ones the running slot's same part has (delta), stream the rest with
//!    coalesced HTTP Range requests; every chunk is decompressed and checked against the index
//!    before it is written at its offset; dropped connections resume from the first missing
//!    chunk;
//! 5. flush, read every part back bypassing the page cache and check its sha256;
//! 6. only then arm the slot for a trial boot (P=top, T=N, S=0, the other lowered) and flush.
//!
//! The slot's kernel and root are one transaction: the boot bits live on the root partition and
//! stay P=0 until both parts are verified, so a power cut at any point leaves the running slot's
//! kernel and root untouched and the inactive slot unbootable.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc;

use chrono::Utc;
use flipside_bootloader_hooks::Slot;
use flipside_contract::index::{ChunkIndex, ChunkVerifier, FetchRange, Limits};

use crate::config::{Config, Location, Mirror};
use crate::device::{Device, Readback, Region};
use crate::durable::Checkpoint;
use crate::error::{Error, Result};
use crate::http::{is_retryable, open_range, read_full, ByteStream, Http};
use crate::offer::offer;
use crate::plan::{plan, ChunkSource};
use crate::progress::Progress;
use crate::record::{Event, Journal, KernelRecord, Outcome, SlotRecord, StateDir};
use crate::running;
use crate::select::{
    above_floor, choose, index_of, installed_index, kernel_part_of, Candidate, Decision, Downgrade,
};
use crate::source::{SourceFactory, SourceSpec, TargetInfo, UpdateSource};
use crate::system::{installed, Installed};
use flipside_contract::rollout::Admission;

/// What `install` was asked.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    pub downgrade: Downgrade,
    /// `--from`: these mirrors instead of the configured ones.
    pub from: Option<Mirror>,
}

/// What an install did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallReport {
    pub slot: Slot,
    pub name: String,
    pub version: u64,
    pub display_version: String,
    /// Bundle bytes downloaded (frames, including coalesced gaps and retried bytes).
    pub fetched: u64,
    /// Image bytes an interrupted install had already written.
    pub reused: u64,
    /// Image bytes copied from the running slot.
    pub copied: u64,
    pub readback: Readback,
    /// The kernel release written into the slot's kernel partition, if any.
    pub kernel_release: Option<String>,
}

/// One part of the release as it is placed: where it goes, the running slot's same part (the
/// seed of a delta), its bundle target and its verified index.
struct Placement {
    region: Region,
    seed: Region,
    bundle: TargetInfo,
    index: ChunkIndex,
    index_bytes: Vec<u8>,
}

/// Byte counts of placed parts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    fetched: u64,
    reused: u64,
    copied: u64,
}

/// The source spec for a command: configured mirrors, or `--from`.
pub fn source_spec(config: &Config, from: Option<&Mirror>) -> SourceSpec {
    SourceSpec {
        mirrors: match from {
            Some(m) => vec![m.clone()],
            None => config.repository.mirrors.clone(),
        },
        trusted_root: config.repository.trusted_root.clone(),
        metadata_dir: config.device.state_dir.join("metadata"),
        network: config.network.clone(),
    }
}

/// What an install came to, when it did not fail.
#[derive(Debug)]
pub enum InstallOutcome {
    /// The newest release offered to this device is installed.
    UpToDate,
    /// A newer release is published, but its rollout has not reached this device.
    Waiting {
        version: u64,
        admission: Admission,
    },
    Installed(InstallReport),
}

/// Runs an install.
pub fn install(
    config: &Config,
    options: &InstallOptions,
    factory: &SourceFactory,
) -> Result<InstallOutcome> {
    let installed = installed(config)?;
    let device = Device::open(&config.device, true)?;
    let running = running::running_slot(&config.device, device.state())?;
    let target_slot = !running;
    // Dry run of the first transition: refuses a pending trial or a missing fallback now,
    // before anything is downloaded.
    device.state().clear_for_write(target_slot)?;

    let spec = source_spec(config, options.from.as_ref());
    let mut source = factory(&spec)?;
    let targets = source.refresh()?;
    let state = StateDir::new(&config.device.state_dir);
    let offer = offer(config, &installed.name, Utc::now());
    let decision = choose(&targets, &installed, options.downgrade, &offer)?;
    let chosen = match above_floor(decision, state.floor()?, &state.floor_path())? {
        Decision::UpToDate { version } => {
            log::info!(
                "{} {version} is installed and is the newest release",
                installed.name
            );
            return Ok(InstallOutcome::UpToDate);
        }
        Decision::Waiting { version, admission } => {
            return Ok(InstallOutcome::Waiting { version, admission })
        }
        Decision::Update(c) => *c,
    };
    let mut job = Job {
        config,
        device,
        state,
        source: source.as_mut(),
        http: Http::new(config.network.clone())?,
        slot: target_slot,
        running,
        chosen,
        installed,
    };
    let result = job.run(&targets);
    if let Err(e) = &result {
        let outcome = Outcome {
            time: Utc::now(),
            event: Event::InstallFailed,
            slot: target_slot.name().into(),
            version: Some(job.chosen.custom.version),
            display_version: Some(job.chosen.custom.display_version.clone()),
            detail: e.to_string(),
            class: Some(e.class().name().into()),
        };
        if let Err(record) = job.state.set_last(&outcome) {
            log::warn!("cannot record the failure: {record}");
        }
    }
    result.map(InstallOutcome::Installed)
}

struct Job<'a> {
    config: &'a Config,
    device: Device,
    state: StateDir,
    source: &'a mut dyn UpdateSource,
    http: Http,
    slot: Slot,
    running: Slot,
    chosen: Candidate,
    installed: Installed,
}

impl Job<'_> {
    fn run(&mut self, targets: &[TargetInfo]) -> Result<InstallReport> {
        let custom = self.chosen.custom.clone();
        let kernel = self.prepare_kernel(targets)?;
        let root = self.prepare_root(targets)?;
        log::info!(
            "installing {} {} ({}) into slot {}: {} bytes, {} chunks{}",
            custom.name,
            custom.version,
            custom.display_version,
            self.slot,
            custom.image_length,
            root.index.len(),
            match &kernel {
                Some((_, k)) => format!(
                    ", and kernel {} ({} bytes)",
                    k.kernel_release, k.image_length
                ),
                None => String::new(),
            }
        );

        // Nothing is written before the slot is unbootable and that is on disk.
        let previous = self.state.journal().unwrap_or_else(|e| {
            log::warn!("ignoring the install journal: {e}");
            None
        });
        // The slot may already hold this very image (installed, then rejected or rolled back).
        let same_image = self
            .state
            .slot_record(self.slot)
            .ok()
            .flatten()
            .is_some_and(|r| r.image_sha256 == custom.image_sha256);
        let cleared = self.device.state().clear_for_write(self.slot)?;
        self.device.commit(&cleared)?;
        self.state.clear_slot(self.slot)?;
        let journal = Journal {
            slot: self.slot.name().into(),
            bundle_target: self.chosen.bundle.name.clone(),
            version: custom.version,
            image_sha256: custom.image_sha256.clone(),
            started: Utc::now(),
            synced: Default::default(),
        };
        self.state.set_journal(&journal)?;
        let mut checkpoint = Checkpoint::new(self.state.clone(), journal, self.config.device.sync);

        let mut progress = Progress::new(self.config.progress.interval);
        let resume = same_image || previous.is_some_and(|j| j.slot == self.slot.name());
        let mut counts = Counts::default();
        if let Some((part, _)) = &kernel {
            let seed = self.kernel_seed_index();
            counts = self.place(part, resume, seed, &mut checkpoint, &mut progress)?;
        }
        let seed = self.seed_index(targets);
        let root_counts = self.place(&root, resume, seed, &mut checkpoint, &mut progress)?;
        counts.fetched += root_counts.fetched;
        counts.reused += root_counts.reused;
        counts.copied += root_counts.copied;
        self.device.sync()?;

        if let Some((part, _)) = &kernel {
            self.read_back(part, &mut progress)?;
        }
        let readback = self.read_back(&root, &mut progress)?;

        let armed = self
            .device
            .state()
            .arm_for_trial(self.slot, self.config.update.trial_boots)?;
        self.device.commit(&armed)?;

        let record = SlotRecord {
            name: custom.name.clone(),
            version: custom.version,
            display_version: custom.display_version.clone(),
            hardware_id: custom.hardware_id.clone(),
            image_length: custom.image_length,
            image_sha256: custom.image_sha256.clone(),
            installed_at: Utc::now(),
            kernel: kernel.as_ref().map(|(_, k)| k.clone()),
            allow_rollback: custom.allow_rollback,
        };
        let kernel_index = kernel.as_ref().map(|(p, _)| p.index_bytes.as_slice());
        self.state
            .set_slot(self.slot, &record, &root.index_bytes, kernel_index)?;
        self.state.clear_journal()?;
        let kernel_release = record.kernel.map(|k| k.kernel_release);
        self.state.set_last(&Outcome {
            time: Utc::now(),
            event: Event::Installed,
            slot: self.slot.name().into(),
            version: Some(custom.version),
            display_version: Some(custom.display_version.clone()),
            detail: format!(
                "armed for {} trial boots{}; downloaded {} bytes, reused {}, copied {}",
                self.config.update.trial_boots,
                kernel_release
                    .as_ref()
                    .map(|k| format!(" with kernel {k}"))
                    .unwrap_or_default(),
                counts.fetched,
                counts.reused,
                counts.copied
            ),
            class: None,
        })?;
        Ok(InstallReport {
            slot: self.slot,
            name: custom.name,
            version: custom.version,
            display_version: custom.display_version,
            fetched: counts.fetched,
            reused: counts.reused,
            copied: counts.copied,
            readback,
            kernel_release,
        })
    }

    /// The root image's part: refused before any write if it does not fit the slot; its index
    /// fetched and checked against the chosen release.
    fn prepare_root(&mut self, targets: &[TargetInfo]) -> Result<Placement> {
        let custom = self.chosen.custom.clone();
        let slot_length = self.device.slot_len(self.slot);
        if custom.image_length > slot_length {
            return Err(Error::SlotTooSmall {
                target: self.chosen.bundle.name.clone(),
                slot: self.slot,
                image_length: custom.image_length,
                slot_length,
            });
        }
        let index_target = index_of(targets, &self.chosen)?.clone();
        let (index, index_bytes) = self.fetch_index(&index_target, slot_length)?;
        let bundle = self.chosen.bundle.clone();
        check_index(
            &index,
            &index_target,
            custom.image_length,
            &custom.image_sha256,
            bundle.length,
        )?;
        Ok(Placement {
            region: self.slot.into(),
            seed: self.running.into(),
            bundle,
            index,
            index_bytes,
        })
    }

    /// The kernel part, when the device boots a kernel from each slot: the release must have
    /// one, it must fit the kernel partition, and its index must describe its signed UKI. A
    /// device that keeps its kernel outside the slots installs the root alone.
    fn prepare_kernel(
        &mut self,
        targets: &[TargetInfo],
    ) -> Result<Option<(Placement, KernelRecord)>> {
        let pick = kernel_part_of(targets, &self.chosen)?;
        if !self.device.has_kernel_partitions() {
            if let Some(p) = pick {
                log::info!(
                    "{} is not installed: this device keeps its kernel outside the slots",
                    p.bundle.name
                );
            }
            return Ok(None);
        }
        let Some(pick) = pick else {
            let layout = &self.config.device.kernel_layout;
            return Err(Error::NoKernelPart {
                target: self.chosen.bundle.name.clone(),
                kernel_a: layout.a.to_string(),
                kernel_b: layout.b.to_string(),
            });
        };
        let region = Region::kernel(self.slot);
        let length = self.device.slot_len(region);
        let custom = &pick.custom;
        if custom.image_length > length {
            return Err(Error::SlotTooSmall {
                target: pick.bundle.name.clone(),
                slot: self.slot,
                image_length: custom.image_length,
                slot_length: length,
            });
        }
        let (index, index_bytes) = self.fetch_index(&pick.index, length)?;
        check_index(
            &index,
            &pick.index,
            custom.image_length,
            &custom.image_sha256,
            pick.bundle.length,
        )?;
        let record = KernelRecord {
            kernel_release: custom
                .kernel
                .as_ref()
                .map(|k| k.kernel_release.clone())
                .unwrap_or_default(),
            image_length: custom.image_length,
            image_sha256: custom.image_sha256.clone(),
        };
        let placement = Placement {
            region,
            seed: Region::kernel(self.running),
            bundle: pick.bundle,
            index,
            index_bytes,
        };
        Ok(Some((placement, record)))
    }

    /// Writes every chunk of one part: kept from an interrupted install (`resume`), copied from
    /// the running slot's same part (`seed`, the index of what it holds), or downloaded. The
    /// partition is synced on `checkpoint`'s schedule, after the copies and at the end.
    fn place(
        &mut self,
        part: &Placement,
        resume: bool,
        seed: Option<ChunkIndex>,
        checkpoint: &mut Checkpoint,
        progress: &mut Progress,
    ) -> Result<Counts> {
        let index = &part.index;
        let present = if resume {
            self.scan_present(part, progress)?
        } else {
            vec![false; index.len()]
        };
        let located = seed.as_ref().map(|s| index.locate_in(s));
        let mut sources = plan(&present, located.as_deref());

        let mut w = Writer::new(part.region, &part.bundle.name, checkpoint);
        progress.phase("write", index.image_length());
        w.reused = sum_len(index, &sources, |s| s == ChunkSource::Present);
        w.done = w.reused;
        self.copy_from_running(part, &mut sources, &mut w, progress)?;
        // Copies are fast and a resume should not repeat them: durable before any download.
        w.sync_pending(&mut self.device, None)?;
        self.fetch_missing(part, &sources, &mut w, progress)?;
        w.sync_pending(&mut self.device, None)?;
        progress.finish();
        Ok(Counts {
            fetched: w.fetched,
            reused: w.reused,
            copied: w.copied,
        })
    }

    /// Reads a written part back past the page cache and checks it against its index's sha256.
    fn read_back(&mut self, part: &Placement, progress: &mut Progress) -> Result<Readback> {
        let length = part.index.image_length();
        progress.phase("verify", length);
        let (sha, readback) = self.device.hash_slot_uncached(
            part.region,
            length,
            self.config.device.readback,
            &mut |n| progress.update(n, 0),
        )?;
        progress.finish();
        if sha != part.index.image_sha256() {
            return Err(Error::ImageHash {
                region: part.region,
                expected: hex::encode(part.index.image_sha256()),
                found: hex::encode(sha),
            });
        }
        Ok(readback)
    }

    /// The index, fetched through the source (bounded by its signed length, hash-checked) and
    /// decoded with the slot size as the image limit.
    fn fetch_index(
        &mut self,
        target: &TargetInfo,
        slot_length: u64,
    ) -> Result<(ChunkIndex, Vec<u8>)> {
        let cap = self.config.update.max_index_bytes;
        if target.length > cap {
            return Err(Error::TooLarge {
                what: format!("index {}", target.name),
                length: target.length,
                limit: cap,
            });
        }
        let bytes = self.source.fetch_target(target)?;
        if bytes.len() as u64 != target.length {
            return Err(Error::DataMismatch {
                what: format!("index {}", target.name),
                expected_what: "length",
                expected: target.length.to_string(),
                found: bytes.len().to_string(),
            });
        }
        let limits = Limits {
            max_image_length: slot_length,
            ..Limits::default()
        };
        let index = ChunkIndex::decode(&bytes, &limits).map_err(|source| Error::Index {
            target: target.name.clone(),
            source,
        })?;
        Ok((index, bytes))
    }

    /// Which chunks the part's partition already holds (after an interrupted install into it).
    fn scan_present(&self, part: &Placement, progress: &mut Progress) -> Result<Vec<bool>> {
        let index = &part.index;
        progress.phase("scan", index.image_length());
        let mut buf = Vec::new();
        let mut present = Vec::with_capacity(index.len());
        let mut done = 0;
        for entry in index {
            buf.resize(usize::try_from(entry.length).unwrap_or(0), 0);
            self.device
                .read_slot(part.region, entry.image_offset, &mut buf)?;
            present.push(entry.matches(&buf));
            done += entry.length;
            progress.update(done, 0);
        }
        progress.finish();
        let kept = present.iter().filter(|&&p| p).count();
        log::info!(
            "resuming: {kept} of {} chunks are already in {}",
            index.len(),
            part.region
        );
        Ok(present)
    }

    /// The index of the running slot's image: kept in the state directory by the install that
    /// wrote it, else the installed release's index target if the repository still lists it.
    /// Only a hint: copied chunks are checked like any other.
    fn seed_index(&mut self, targets: &[TargetInfo]) -> Option<ChunkIndex> {
        let limits = Limits {
            max_image_length: self.device.slot_len(self.running),
            ..Limits::default()
        };
        let cap = self.config.update.max_index_bytes;
        let stored = self
            .state
            .slot_index(self.running, cap)
            .inspect_err(|e| log::warn!("no stored index of the running slot: {e}"))
            .ok()
            .flatten();
        let (bytes, from) = match stored {
            Some(b) => (b, self.state.slot_index_path(self.running)),
            None => installed_index(targets, &self.installed)
                .filter(|t| t.length <= cap)
                .cloned()
                .and_then(|t| match self.source.fetch_target(&t) {
                    Ok(b) => Some((b, PathBuf::from(t.name))),
                    Err(e) => {
                        log::warn!("no delta: cannot fetch the installed release's index: {e}");
                        None
                    }
                })?,
        };
        match ChunkIndex::decode(&bytes, &limits) {
            Ok(i) => Some(i),
            Err(e) => {
                log::warn!(
                    "no delta: the running slot's index {} is unusable, so it is ignored: {e}",
                    from.display()
                );
                None
            }
        }
    }

    /// The index of the running slot's kernel part, kept by the install that wrote it. Only a
    /// hint, like [`Job::seed_index`].
    fn kernel_seed_index(&mut self) -> Option<ChunkIndex> {
        let limits = Limits {
            max_image_length: self.device.slot_len(Region::kernel(self.running)),
            ..Limits::default()
        };
        let cap = self.config.update.max_index_bytes;
        let bytes = self.state.kernel_index(self.running, cap).ok().flatten()?;
        ChunkIndex::decode(&bytes, &limits)
            .inspect_err(|e| {
                log::warn!("no kernel delta: the running kernel's index is unusable: {e}")
            })
            .ok()
    }

    /// Copies chunks the running slot's same part holds; a chunk whose bytes there do not match
    /// falls back to a download.
    fn copy_from_running(
        &mut self,
        part: &Placement,
        sources: &mut [ChunkSource],
        w: &mut Writer,
        progress: &mut Progress,
    ) -> Result<()> {
        let index = &part.index;
        let running_length = self.device.slot_len(part.seed);
        let mut buf = Vec::new();
        for (i, entry) in index.iter().enumerate() {
            let ChunkSource::Copy { from } = sources[i] else {
                continue;
            };
            let fits = from
                .checked_add(entry.length)
                .is_some_and(|end| end <= running_length);
            buf.resize(usize::try_from(entry.length).unwrap_or(0), 0);
            if fits {
                self.device.read_slot(part.seed, from, &mut buf)?;
            }
            if fits && entry.matches(&buf) {
                self.device
                    .write_slot(part.region, entry.image_offset, &buf)?;
                w.copied += entry.length;
                w.done += entry.length;
                w.wrote(&mut self.device, None, entry.length)?;
                progress.update(w.done, w.fetched);
            } else {
                sources[i] = ChunkSource::Fetch;
            }
        }
        Ok(())
    }

    /// Streams the frames of every chunk still missing.
    fn fetch_missing(
        &mut self,
        part: &Placement,
        sources: &[ChunkSource],
        w: &mut Writer,
        progress: &mut Progress,
    ) -> Result<()> {
        let index = &part.index;
        let mut wanted: Vec<bool> = sources.iter().map(|&s| s == ChunkSource::Fetch).collect();
        let ranges = index.fetch_ranges(|i, _| wanted[i], self.config.network.range_gap);
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
            if k > 0 && self.ignores_range(&locations) {
                // Every request would send the bundle from its start again: one request for
                // all that is left, reading past what is not wanted.
                let rest = FetchRange::spanning(&ranges[k..]);
                log::warn!(
                    "a mirror answers Range requests with the whole file: the {} remaining \
                     ranges of {} come in one request of {} bytes; a server honouring Range \
                     saves traffic",
                    ranges.len() - k,
                    part.bundle.name,
                    rest.bundle.end
                );
                return self.fetch_range(part, &rest, &mut wanted, &locations, w, progress);
            }
            self.fetch_range(part, range, &mut wanted, &locations, w, progress)?;
        }
        Ok(())
    }

    fn ignores_range(&self, locations: &[Location]) -> bool {
        locations.iter().any(|l| match l {
            Location::Url(url) => self.http.ignores_range(url),
            Location::File(_) => false,
        })
    }

    /// One coalesced run of frames, with bounded retries: each attempt asks for the bytes from
    /// the first chunk still wanted; a mirror that answers with a permanent error or bad data
    /// is not asked again.
    fn fetch_range(
        &mut self,
        part: &Placement,
        range: &FetchRange,
        wanted: &mut [bool],
        locations: &[Location],
        w: &mut Writer,
        progress: &mut Progress,
    ) -> Result<()> {
        let policy = &self.config.network;
        let index = &part.index;
        let entries = index.entries();
        let total = part.bundle.length;
        let mut excluded: BTreeSet<usize> = BTreeSet::new();
        let mut mirror = 0usize;
        let mut failures = 0u32;
        loop {
            let Some(first) = range.chunks.clone().find(|&i| wanted[i]) else {
                return Ok(());
            };
            let bytes = entries[first].frame_offset..range.bundle.end;
            let location = &locations[mirror];
            let before = w.done;
            let attempt = open_range(&self.http, location, bytes, total).and_then(|mut stream| {
                w.stream(
                    &mut self.device,
                    index,
                    first..range.chunks.end,
                    wanted,
                    stream.as_mut(),
                    progress,
                )
            });
            let e = match attempt {
                Ok(()) => return Ok(()),
                Err(Error::Chunk { target, source, .. }) => Error::Chunk {
                    target,
                    url: location.to_string(),
                    source,
                },
                Err(e) => e,
            };
            let progressed = w.done > before;
            let retry = is_retryable(&e);
            if !retry {
                excluded.insert(mirror);
            }
            if progressed {
                failures = 0;
            } else if retry {
                failures += 1;
            }
            let next = (1..=locations.len())
                .map(|k| (mirror + k) % locations.len())
                .find(|m| !excluded.contains(m));
            match next {
                Some(m) if failures <= policy.retries => {
                    let pause = if retry {
                        policy.backoff(failures.max(1))
                    } else {
                        Default::default()
                    };
                    log::warn!(
                        "{e}; retrying from chunk {} via {} in {pause:?} (attempt {failures}/{})",
                        range.chunks.clone().find(|&i| wanted[i]).unwrap_or(first),
                        locations[m],
                        policy.retries
                    );
                    std::thread::sleep(pause);
                    mirror = m;
                }
                _ => return Err(e),
            }
        }
    }
}

/// The index must describe the signed image (length, sha256) and the signed bundle (length).
fn check_index(
    index: &ChunkIndex,
    target: &TargetInfo,
    image_length: u64,
    image_sha256: &str,
    bundle_length: u64,
) -> Result<()> {
    let mismatch = |why: String| Error::IndexMismatch {
        target: target.name.clone(),
        why,
    };
    if index.image_length() != image_length {
        return Err(mismatch(format!(
            "it describes a {}-byte image, the release a {}-byte one",
            index.image_length(),
            image_length
        )));
    }
    if hex::encode(index.image_sha256()) != image_sha256 {
        return Err(mismatch(
            "its image sha256 differs from the release's".into(),
        ));
    }
    if index.bundle_length() != bundle_length {
        return Err(mismatch(format!(
            "its frames add up to {} bytes, the signed bundle is {}",
            index.bundle_length(),
            bundle_length
        )));
    }
    Ok(())
}

/// Frames queued for each verifier.
const FRAMES_IN_FLIGHT: usize = 4;
/// Verified chunks queued from each verifier.
const CHUNKS_IN_FLIGHT: usize = 2;

fn sum_len(index: &ChunkIndex, sources: &[ChunkSource], f: impl Fn(ChunkSource) -> bool) -> u64 {
    index
        .iter()
        .zip(sources)
        .filter(|(_, &s)| f(s))
        .map(|(e, _)| e.length)
        .sum()
}

/// Verifies and writes chunks from a stream of frames, counts, and syncs on schedule.
struct Writer<'c> {
    target: String,
    region: Region,
    /// Image bytes placed: every chunk below this count has been handed to the device.
    done: u64,
    fetched: u64,
    reused: u64,
    copied: u64,
    checkpoint: &'c mut Checkpoint,
}

impl Writer<'_> {
    fn new<'c>(region: Region, target: &str, checkpoint: &'c mut Checkpoint) -> Writer<'c> {
        Writer {
            target: target.to_string(),
            region,
            done: 0,
            fetched: 0,
            reused: 0,
            copied: 0,
            checkpoint,
        }
    }

    /// `n` more bytes were handed to the device (or to `out`, which buffers): syncs when due.
    fn wrote(&mut self, device: &mut Device, out: Option<&mut RunWriter>, n: u64) -> Result<()> {
        if self.checkpoint.wrote(n) {
            self.sync(device, out)?;
        }
        Ok(())
    }

    /// Syncs if anything was written since the last sync.
    fn sync_pending(&mut self, device: &mut Device, out: Option<&mut RunWriter>) -> Result<()> {
        if self.checkpoint.pending() {
            self.sync(device, out)?;
        }
        Ok(())
    }

    fn sync(&mut self, device: &mut Device, out: Option<&mut RunWriter>) -> Result<()> {
        if let Some(out) = out {
            out.flush(device)?;
        }
        self.checkpoint.sync(device, self.region.part, self.done)
    }

    /// Reads the frames of `chunks` in order from `stream`; each wanted one is verified, then
    /// written at its offset; unwanted ones (coalesced gaps) are read past.
    ///
    /// Three stages with bounded channels, so memory stays bounded: a network thread reads
    /// frames and deals them round-robin to [`verifiers`] threads, which decompress and check
    /// them (each chunk is verified before anything of it is written); this thread takes the
    /// results back in the same order and writes them through a [`RunWriter`]. Whatever was
    /// verified is written before an error is returned.
    fn stream(
        &mut self,
        device: &mut Device,
        index: &ChunkIndex,
        chunks: std::ops::Range<usize>,
        wanted: &mut [bool],
        stream: &mut dyn ByteStream,
        progress: &mut Progress,
    ) -> Result<()> {
        let entries = index.entries();
        let first = chunks.start;
        let wanted_now: Vec<bool> = wanted[chunks.clone()].to_vec();
        // Owned: the writing loop below needs all of `self`.
        let target = self.target.clone();
        let target = target.as_str();
        let n = verifiers();
        let mut out = RunWriter::new(self.region);
        let result = std::thread::scope(|scope| {
            let mut to_verifiers = Vec::with_capacity(n);
            let mut from_verifiers = Vec::with_capacity(n);
            for _ in 0..n {
                let (frame_tx, frame_rx) =
                    mpsc::sync_channel::<Result<(usize, Vec<u8>)>>(FRAMES_IN_FLIGHT);
                let (done_tx, done_rx) = mpsc::sync_channel::<Result<Verified>>(CHUNKS_IN_FLIGHT);
                to_verifiers.push(frame_tx);
                from_verifiers.push(done_rx);
                let wanted_now = &wanted_now;
                scope.spawn(move || {
                    let mut verifier = ChunkVerifier::new();
                    for next in frame_rx {
                        let verified = next.and_then(|(i, frame)| {
                            if !wanted_now[i - first] {
                                return Ok(Verified { i, chunk: None });
                            }
                            let mut chunk = Vec::new();
                            verifier
                                .verify_into(&entries[i], &frame, &mut chunk)
                                .map_err(|source| Error::Chunk {
                                    target: target.to_string(),
                                    url: String::new(),
                                    source,
                                })?;
                            Ok(Verified {
                                i,
                                chunk: Some(chunk),
                            })
                        });
                        let failed = verified.is_err();
                        if done_tx.send(verified).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            let reading = chunks.clone();
            scope.spawn(move || {
                for (k, i) in reading.enumerate() {
                    let mut buf = vec![0u8; usize::try_from(entries[i].frame_length).unwrap_or(0)];
                    let frame = read_full(stream, &mut buf, target).map(|()| (i, buf));
                    let failed = frame.is_err();
                    if to_verifiers[k % n].send(frame).is_err() || failed {
                        return;
                    }
                }
            });
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

/// Coalesces chunks written at consecutive offsets into large writes that end on a page
/// boundary, so the page cache rarely has to read a partly overwritten page first.
struct RunWriter {
    region: Region,
    /// Slot offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

/// Bytes gathered before a write.
const RUN_BYTES: usize = 1 << 20;
/// Page size writes are aligned to.
const PAGE: u64 = 4096;

impl RunWriter {
    fn new(region: Region) -> RunWriter {
        RunWriter {
            region,
            start: 0,
            buf: Vec::with_capacity(RUN_BYTES + (256 << 10)),
        }
    }

    fn put(&mut self, device: &mut Device, offset: u64, data: &[u8]) -> Result<()> {
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

    fn flush(&mut self, device: &mut Device) -> Result<()> {
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
