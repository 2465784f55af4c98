//! The install as named steps over one context, [`Run`], in the order they run (see the module
//! documentation of [`crate::install`]). Each step is a method that takes what the steps
//! before it produced and returns what the next ones need, so that each can be tested alone.

use std::collections::HashMap;
use std::ops::ControlFlow;

use chrono::Utc;
use flipside_bootloader_hooks::Slot;
use flipside_contract::index::{ChunkEntry, ChunkIndex};

use super::parts::{Counts, Parts, Placement};
use super::writer::{sum_len, Writer};
use super::{InstallOutcome, InstallReport};
use crate::config::Config;
use crate::device::{Device, Part, ReadBack, ReadBehind, Readback, Region};
use crate::durable::Checkpoint;
use crate::error::{Error, Result};
use crate::events::{emit, FleetEvent, Kind};
use crate::offer::offer;
use crate::plan::{plan, ChunkSource};
use crate::progress::Progress;
use crate::record::{Event, Journal, Outcome, SlotRecord, StateDir};
use crate::select::{above_floor, choose, describe_wait, Candidate, Decision, Downgrade};
use crate::source::{TargetInfo, UpdateSource};
use crate::system::Installed;
use crate::verified::RunDir;

/// Step 1, refuse: the dry run of the first transition
/// ([`flipside_bootloader_hooks::BootState::clear_for_write`]) refuses a pending trial or a
/// missing proven fallback before anything is downloaded.
pub(super) fn refuse<B: ReadBack>(device: &Device<B>, slot: Slot) -> Result<()> {
    device.state().clear_for_write(slot)?;
    Ok(())
}

/// What the steps share: the configuration, the device, the state directory, the repository,
/// the slots, the installed release and, once decided, the verified targets.
pub(super) struct Run<'a, B> {
    pub(super) config: &'a Config,
    pub(super) device: &'a mut Device<B>,
    pub(super) state: StateDir,
    pub(super) source: &'a mut dyn UpdateSource,
    /// The slot written: the one not running.
    pub(super) slot: Slot,
    pub(super) running: Slot,
    pub(super) installed: Installed,
    /// Every target of the verified metadata (filled by [`Run::decide`]).
    pub(super) targets: Vec<TargetInfo>,
    pub(super) progress: Progress,
    /// The read-behind of each part placed, until its read-back step.
    pub(super) behind: Vec<(Region, ReadBehind)>,
}

/// What [`Run::plan`] leaves for [`Run::place`]: each chunk's source and, on a delta, the
/// image the running part should hold (its index's length and sha256) and the chunks of it
/// each planned delta frame's base is made of (by delta number), to check the base against.
pub(super) struct Planned {
    pub(super) sources: Vec<ChunkSource>,
    pub(super) seed: Option<SeedImage>,
    pub(super) bases: HashMap<usize, Vec<ChunkEntry>>,
}

/// The image the running part's index describes.
#[derive(Clone, Copy, Debug)]
pub(super) struct SeedImage {
    pub(super) length: u64,
    pub(super) sha256: [u8; 32],
}

/// What [`Run::clear`] leaves for the placing steps.
pub(super) struct Cleared {
    /// The slot may hold chunks of this image (an interrupted install into it, or the same
    /// image installed before): worth a scan, every kept chunk re-hashed.
    pub(super) resume: bool,
    pub(super) checkpoint: Checkpoint,
}

impl<'a, B: ReadBack> Run<'a, B> {
    pub(super) fn new(
        config: &'a Config,
        device: &'a mut Device<B>,
        source: &'a mut dyn UpdateSource,
        running: Slot,
        installed: Installed,
    ) -> Self {
        Run {
            config,
            device,
            state: StateDir::new(&config.device.state_dir),
            source,
            slot: !running,
            running,
            installed,
            targets: Vec::new(),
            progress: Progress::new(config.progress.interval),
            behind: Vec::new(),
        }
    }

    /// Steps 2 to 9; a failure after the decision is recorded as the last outcome.
    pub(super) fn run(mut self, downgrade: Downgrade) -> Result<InstallOutcome> {
        let chosen = match self.decide(downgrade)? {
            ControlFlow::Break(outcome) => return Ok(outcome),
            ControlFlow::Continue(chosen) => chosen,
        };
        let result = self.install(&chosen);
        if let Err(e) = &result {
            self.record_failure(&chosen, e);
        }
        result.map(InstallOutcome::Installed)
    }

    fn install(&mut self, chosen: &Candidate) -> Result<InstallReport> {
        let parts = self.fetch_index(chosen)?;
        parts.announce(chosen, self.slot);
        let Cleared {
            resume,
            mut checkpoint,
        } = self.clear(chosen)?;
        let mut counts = Counts::default();
        for part in parts.iter() {
            let planned = self.plan(part, resume)?;
            counts += self.place(part, planned, &mut checkpoint)?;
        }
        self.device.sync()?;
        let mut readback = Readback::Direct;
        for part in parts.iter() {
            readback = self.read_back(part)?;
        }
        self.arm()?;
        self.record(chosen, &parts, counts, readback)
    }

    /// Step 2, decide: the TUF workflow (specification 1.0 sections 5.3 to 5.6, in the
    /// source), then the release for this device ([`choose`]: hardware, channel, rollout,
    /// anti-rollback against the installed release) and the persistent floor ([`above_floor`]),
    /// which no device flag lowers. Breaks with the outcome when there is nothing to install.
    pub(super) fn decide(
        &mut self,
        downgrade: Downgrade,
    ) -> Result<ControlFlow<InstallOutcome, Candidate>> {
        self.targets = self.source.refresh()?;
        let offer = offer(self.config, &self.installed.name, Utc::now());
        let decision = choose(&self.targets, &self.installed, downgrade, &offer)?;
        let decision = above_floor(decision, self.state.floor()?, &self.state.floor_path())?;
        let (event, flow) = match decision {
            Decision::UpToDate { version } => {
                let detail = format!(
                    "{} {version} is installed and is the newest release",
                    self.installed.name
                );
                log::info!("{detail}");
                let event = FleetEvent::new(Kind::Check, Some(version), None, detail);
                (event, ControlFlow::Break(InstallOutcome::UpToDate))
            }
            Decision::Waiting { version, admission } => {
                let detail = describe_wait(version, admission);
                let event = FleetEvent::new(Kind::Waiting, Some(version), None, detail);
                (
                    event,
                    ControlFlow::Break(InstallOutcome::Waiting { version, admission }),
                )
            }
            Decision::Update(c) => {
                let (version, slot) = (Some(c.custom.version), Some(self.slot.name().into()));
                let detail = format!(
                    "{} {} into slot {}",
                    c.custom.name, c.custom.version, self.slot
                );
                let event = FleetEvent::new(Kind::Download, version, slot, detail);
                (event, ControlFlow::Continue(*c))
            }
        };
        emit(self.state.path(), &event);
        Ok(flow)
    }

    /// Step 3, fetch index: the kernel part first (when the device boots a kernel from each
    /// slot), then the root image; each refused before any write if it does not fit its
    /// partition, its index verified and checked against the release's signed fields.
    pub(super) fn fetch_index(&mut self, chosen: &Candidate) -> Result<Parts> {
        let kernel = self.kernel_part(chosen)?;
        let root = self.root_part(chosen)?;
        Ok(Parts { kernel, root })
    }

    /// Step 4, clear: the slot made unbootable on disk (P=0,T=0,S=0, flushed) and its record
    /// forgotten, then the install journaled: nothing is written into the slot before that.
    pub(super) fn clear(&mut self, chosen: &Candidate) -> Result<Cleared> {
        let previous = self.state.journal().unwrap_or_else(|e| {
            log::warn!("ignoring the install journal: {e}");
            None
        });
        // The slot may already hold this very image (installed, then rejected or rolled back).
        let same_image = (self.state.slot_record(self.slot).ok().flatten())
            .is_some_and(|r| r.image_sha256 == chosen.custom.image_sha256);
        let resume = same_image || previous.is_some_and(|j| j.slot == self.slot.name());
        let cleared = self.device.state().clear_for_write(self.slot)?;
        self.device.commit(&cleared)?;
        self.state.clear_slot(self.slot)?;
        let journal = Journal {
            slot: self.slot.name().into(),
            bundle_target: chosen.bundle.name.to_string(),
            version: chosen.custom.version,
            image_sha256: chosen.custom.image_sha256.clone(),
            started: Utc::now(),
            synced: Default::default(),
        };
        self.state.set_journal(&journal)?;
        let checkpoint = Checkpoint::new(self.state.clone(), journal, self.config.device.sync);
        Ok(Cleared { resume, checkpoint })
    }

    /// Step 5, plan: where each chunk of a part comes from ([`plan`]): kept when `resume` and
    /// the partition's bytes hash to it, copied when the running slot's same part has it (its
    /// index is only a hint: copies are checked), rebuilt from a delta frame when the running
    /// slot has its base (checked too), else downloaded.
    pub(super) fn plan(&mut self, part: &Placement, resume: bool) -> Result<Planned> {
        let seed = match part.region.part {
            Part::Root => self.seed_index(),
            Part::Kernel => self.kernel_seed_index(),
        };
        let present = match resume {
            true => self.scan_present(part)?,
            false => vec![false; part.index.len()],
        };
        let located = seed.as_ref().map(|s| part.index.locate_in(s));
        let deltas = seed.as_ref().map(|s| part.index.deltas_from(s));
        let sources = plan(&present, located.as_deref(), deltas.as_deref());
        let bases = match &seed {
            Some(s) => delta_bases(&part.index, s, &sources),
            None => HashMap::new(),
        };
        Ok(Planned {
            sources,
            bases,
            seed: seed.map(|s| SeedImage {
                length: s.image_length(),
                sha256: s.image_sha256(),
            }),
        })
    }

    /// Step 6, place: copies first (fast, and synced before any download so that a resume does
    /// not repeat them), then the delta frames (any that fails falls back to its full frame),
    /// then the downloads; the partition is synced on `checkpoint`'s schedule
    /// and at the end, each sync recording the durable high-water mark.
    pub(super) fn place(
        &mut self,
        part: &Placement,
        planned: Planned,
        checkpoint: &mut Checkpoint,
    ) -> Result<Counts> {
        let Planned {
            mut sources,
            seed,
            bases,
        } = planned;
        let copies = sources
            .iter()
            .any(|s| matches!(s, ChunkSource::Copy { .. }));
        let trusted = match seed {
            Some(seed) if copies => self.check_running(part, seed)?,
            _ => false,
        };
        let index = &part.index;
        let mut w = Writer::new(part.region, part.bundle.name.as_str(), checkpoint);
        let mode = self.config.device.readback;
        w.behind = self.device.read_behind(part.region, index.len(), mode);
        for (i, (entry, _)) in (index.iter().zip(&sources).enumerate())
            .filter(|(_, (_, &s))| s == ChunkSource::Present)
        {
            w.placed(i, entry);
        }
        self.progress.phase("write", index.image_length());
        w.reused = sum_len(index, &sources, |s| s == ChunkSource::Present);
        w.done = w.reused;
        self.copy_from_running(part, &mut sources, &mut w, trusted)?;
        self.fetch_deltas(part, &mut sources, &bases, &mut w)?;
        w.sync_pending(self.device, None)?;
        self.fetch_segments(part, &mut sources, &mut w)?;
        self.fetch_missing(part, &sources, &mut w)?;
        w.sync_pending(self.device, None)?;
        if let Some(behind) = w.behind.take() {
            self.behind.push((part.region, behind));
        }
        self.progress.finish();
        Ok(w.counts())
    }

    /// Step 7, read back: a written part read past the page cache (what a reboot will read)
    /// and checked: chunk by chunk against the index by its read-behind, which read each
    /// segment back once synced, while the next was written ([`crate::device::behind`]); else
    /// (a medium without one) whole, against the index's sha256, the digest of the signed image.
    pub(super) fn read_back(&mut self, part: &Placement) -> Result<Readback> {
        let length = part.index.image_length();
        self.progress.phase("verify", length);
        if let Some(k) = self.behind.iter().position(|(r, _)| *r == part.region) {
            let (_, behind) = self.behind.swap_remove(k);
            let checked = behind.finish().inspect_err(|_| {
                RunDir::new(&self.config.device.run_dir).forget(part.seed);
            })?;
            if checked.complete && checked.bytes == length {
                self.progress.update(length, 0);
                self.progress.finish();
                return Ok(checked.readback);
            }
            log::warn!(
                "{} was read back in part only ({} of {length} bytes): reading it whole",
                part.region,
                checked.bytes
            );
        }
        let progress = &mut self.progress;
        let (sha, readback) = self.device.hash_slot_uncached(
            part.region,
            length,
            self.config.device.readback,
            &mut |n| progress.update(n, 0),
        )?;
        self.progress.finish();
        if sha != part.index.image_sha256() {
            // Copies may have come from a running slot trusted this boot: check it again next
            // time.
            RunDir::new(&self.config.device.run_dir).forget(part.seed);
            return Err(Error::ImageHash {
                region: part.region,
                expected: hex::encode(part.index.image_sha256()),
                found: hex::encode(sha),
            });
        }
        Ok(readback)
    }

    /// Step 8, arm: only now, with every part verified, the slot gets P=top, T=trial boots,
    /// S=0 and the other slot is lowered, in one table write (backup first).
    pub(super) fn arm(&mut self) -> Result<()> {
        let trials = self.config.update.trial_boots;
        let armed = self.device.state().arm_for_trial(self.slot, trials)?;
        self.device.commit(&armed)
    }

    /// Step 9, record: the slot's record (written last: it says the slot is complete) with
    /// its indexes, the journal removed, and the outcome.
    pub(super) fn record(
        &mut self,
        chosen: &Candidate,
        parts: &Parts,
        counts: Counts,
        readback: Readback,
    ) -> Result<InstallReport> {
        let custom = &chosen.custom;
        let record = SlotRecord {
            name: custom.name.clone(),
            version: custom.version,
            display_version: custom.display_version.clone(),
            hardware_id: custom.hardware_id.clone(),
            image_length: custom.image_length,
            image_sha256: custom.image_sha256.clone(),
            installed_at: Utc::now(),
            kernel: parts.kernel.as_ref().map(|(_, k)| k.clone()),
            allow_rollback: custom.allow_rollback,
        };
        let kernel_index = parts.kernel.as_ref().map(|(p, _)| p.index_bytes.as_slice());
        (self.state).set_slot(self.slot, &record, &parts.root.index_bytes, kernel_index)?;
        self.state.clear_journal()?;
        let kernel_release = record.kernel.map(|k| k.kernel_release);
        let detail = installed_detail(self.config.update.trial_boots, &kernel_release, counts);
        self.state
            .set_last(&self.outcome(chosen, Event::Installed, detail, None))?;
        Ok(InstallReport {
            slot: self.slot,
            name: custom.name.clone(),
            version: custom.version,
            display_version: custom.display_version.clone(),
            fetched: counts.fetched,
            reused: counts.reused,
            copied: counts.copied,
            readback,
            kernel_release,
        })
    }

    /// A failed install is the last outcome (`status` shows it); failing to record it only
    /// warns, so the install's own error is the one reported.
    fn record_failure(&self, chosen: &Candidate, e: &Error) {
        let class = Some(e.class().name().into());
        let outcome = self.outcome(chosen, Event::InstallFailed, e.to_string(), class);
        if let Err(record) = self.state.set_last(&outcome) {
            log::warn!("cannot record the failure: {record}");
        }
    }

    fn outcome(
        &self,
        chosen: &Candidate,
        event: Event,
        detail: String,
        class: Option<String>,
    ) -> Outcome {
        Outcome {
            time: Utc::now(),
            event,
            slot: self.slot.name().into(),
            version: Some(chosen.custom.version),
            display_version: Some(chosen.custom.display_version.clone()),
            detail,
            class,
        }
    }
}

fn installed_detail(trial_boots: u8, kernel_release: &Option<String>, counts: Counts) -> String {
    format!(
        "armed for {trial_boots} trial boots{}; downloaded {} bytes, reused {}, copied {}",
        kernel_release
            .as_ref()
            .map(|k| format!(" with kernel {k}"))
            .unwrap_or_default(),
        counts.fetched,
        counts.reused,
        counts.copied
    )
}

/// The seed's chunks that make up the base of each delta frame `sources` plans to use.
fn delta_bases(
    index: &ChunkIndex,
    seed: &ChunkIndex,
    sources: &[ChunkSource],
) -> HashMap<usize, Vec<ChunkEntry>> {
    (sources.iter())
        .filter_map(|s| match *s {
            ChunkSource::Delta { delta, from } => {
                let run = seed.delta_base(&index.deltas()[delta], from)?;
                Some((delta, seed.entries()[run].to_vec()))
            }
            _ => None,
        })
        .collect()
}
