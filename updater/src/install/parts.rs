//! The parts of a release as they are placed (root image, kernel part), their verified
//! indexes, and the indexes of what the running slot holds (the seeds of a delta).

use std::path::PathBuf;

use flipside_bootloader_hooks::Slot;
use flipside_contract::index::{ChunkIndex, Limits};

use super::steps::Run;
use crate::device::{ReadBack, Region};
use crate::error::{Error, Result};
use crate::record::KernelRecord;
use crate::select::{index_of, installed_index, kernel_part_of, Candidate, KernelPick};
use crate::source::TargetInfo;

/// One part of the release as it is placed: where it goes, the running slot's same part (the
/// seed of a delta), its bundle target and its verified index.
pub(super) struct Placement {
    pub(super) region: Region,
    pub(super) seed: Region,
    pub(super) bundle: TargetInfo,
    pub(super) index: ChunkIndex,
    pub(super) index_bytes: Vec<u8>,
}

/// Every part of the chosen release this device installs.
pub(super) struct Parts {
    /// The kernel part, on a device with kernel partitions, with what its record will say.
    pub(super) kernel: Option<(Placement, KernelRecord)>,
    pub(super) root: Placement,
}

impl Parts {
    /// In the order they are placed and read back: the kernel, then the root image.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Placement> {
        (self.kernel.iter().map(|(p, _)| p)).chain(std::iter::once(&self.root))
    }

    /// Logs what is about to be installed.
    pub(super) fn announce(&self, chosen: &Candidate, slot: Slot) {
        let custom = &chosen.custom;
        let kernel = match &self.kernel {
            Some((_, k)) => format!(
                ", and kernel {} ({} bytes)",
                k.kernel_release, k.image_length
            ),
            None => String::new(),
        };
        log::info!(
            "installing {} {} ({}) into slot {slot}: {} bytes, {} chunks{kernel}",
            custom.name,
            custom.version,
            custom.display_version,
            custom.image_length,
            self.root.index.len(),
        );
    }
}

/// Byte counts of placed parts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) fetched: u64,
    pub(super) reused: u64,
    pub(super) copied: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.fetched += other.fetched;
        self.reused += other.reused;
        self.copied += other.copied;
    }
}

impl<B: ReadBack> Run<'_, B> {
    /// The root image's part: refused if it does not fit the slot; its index fetched and
    /// checked against the chosen release.
    pub(super) fn root_part(&mut self, chosen: &Candidate) -> Result<Placement> {
        let custom = &chosen.custom;
        let region = Region::from(self.slot);
        let slot_length = self.fits(&chosen.bundle, region, custom.image_length)?;
        let index_target = index_of(&self.targets, chosen)?.clone();
        let (index, index_bytes) = self.fetch_checked_index(&index_target, slot_length)?;
        let (length, sha256) = (custom.image_length, &custom.image_sha256);
        check_index(&index, &index_target, length, sha256, chosen.bundle.length)?;
        Ok(Placement {
            region,
            seed: self.running.into(),
            bundle: chosen.bundle.clone(),
            index,
            index_bytes,
        })
    }

    /// The kernel part, when the device boots a kernel from each slot: the release must have
    /// one, it must fit the kernel partition, and its index must describe its signed UKI. A
    /// device that keeps its kernel outside the slots installs the root alone.
    pub(super) fn kernel_part(
        &mut self,
        chosen: &Candidate,
    ) -> Result<Option<(Placement, KernelRecord)>> {
        let pick = kernel_part_of(&self.targets, chosen)?;
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
                target: chosen.bundle.name.to_string(),
                kernel_a: layout.a.to_string(),
                kernel_b: layout.b.to_string(),
            });
        };
        self.kernel_placement(pick).map(Some)
    }

    /// The kernel part of the release: it must fit the slot's kernel partition, and its index
    /// must describe its signed UKI.
    fn kernel_placement(&mut self, pick: KernelPick) -> Result<(Placement, KernelRecord)> {
        let region = Region::kernel(self.slot);
        let custom = &pick.custom;
        let length = self.fits(&pick.bundle, region, custom.image_length)?;
        let (index, index_bytes) = self.fetch_checked_index(&pick.index, length)?;
        let (image_length, sha256) = (custom.image_length, &custom.image_sha256);
        check_index(
            &index,
            &pick.index,
            image_length,
            sha256,
            pick.bundle.length,
        )?;
        let record = KernelRecord {
            kernel_release: (custom.kernel.as_ref())
                .map(|k| k.kernel_release.clone())
                .unwrap_or_default(),
            image_length,
            image_sha256: sha256.clone(),
        };
        let placement = Placement {
            region,
            seed: Region::kernel(self.running),
            bundle: pick.bundle,
            index,
            index_bytes,
        };
        Ok((placement, record))
    }

    /// The length of `region`, if an image of `image_length` bytes fits it; refused before
    /// anything is fetched or written.
    fn fits(&self, bundle: &TargetInfo, region: Region, image_length: u64) -> Result<u64> {
        let slot_length = self.device.slot_len(region);
        if image_length > slot_length {
            return Err(Error::SlotTooSmall {
                target: bundle.name.to_string(),
                slot: self.slot,
                image_length,
                slot_length,
            });
        }
        Ok(slot_length)
    }

    /// The index, fetched through the source (bounded by its signed length, hash-checked) and
    /// decoded with the partition's size as the image limit.
    fn fetch_checked_index(
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
        let index = decode(&bytes, slot_length).map_err(|source| Error::Index {
            target: target.name.to_string(),
            source,
        })?;
        Ok((index, bytes))
    }

    /// The index of the running slot's image: kept in the state directory by the install that
    /// wrote it, else the installed release's index target if the repository still lists it.
    /// Only a hint: copied chunks are checked like any other.
    pub(super) fn seed_index(&mut self) -> Option<ChunkIndex> {
        let cap = self.config.update.max_index_bytes;
        let stored = (self.state.slot_index(self.running, cap))
            .inspect_err(|e| log::warn!("no stored index of the running slot: {e}"))
            .ok()
            .flatten();
        let (bytes, from) = match stored {
            Some(b) => (b, self.state.slot_index_path(self.running)),
            None => installed_index(&self.targets, &self.installed)
                .filter(|t| t.length <= cap)
                .cloned()
                .and_then(|t| match self.source.fetch_target(&t) {
                    Ok(b) => Some((b, PathBuf::from(t.name.as_str()))),
                    Err(e) => {
                        log::warn!("no delta: cannot fetch the installed release's index: {e}");
                        None
                    }
                })?,
        };
        decode(&bytes, self.device.slot_len(self.running))
            .inspect_err(|e| {
                log::warn!(
                    "no delta: the running slot's index {} is unusable, so it is ignored: {e}",
                    from.display()
                )
            })
            .ok()
    }

    /// The index of the running slot's kernel part, kept by the install that wrote it. Only a
    /// hint, like [`Run::seed_index`].
    pub(super) fn kernel_seed_index(&mut self) -> Option<ChunkIndex> {
        let cap = self.config.update.max_index_bytes;
        let bytes = self.state.kernel_index(self.running, cap).ok().flatten()?;
        decode(&bytes, self.device.slot_len(Region::kernel(self.running)))
            .inspect_err(|e| {
                log::warn!("no kernel delta: the running kernel's index is unusable: {e}")
            })
            .ok()
    }

    /// Which chunks the part's partition already holds (after an interrupted install into it):
    /// each re-hashed, nothing trusted.
    pub(super) fn scan_present(&mut self, part: &Placement) -> Result<Vec<bool>> {
        let index = &part.index;
        self.progress.phase("scan", index.image_length());
        let mut buf = Vec::new();
        let mut present = Vec::with_capacity(index.len());
        let mut done = 0;
        for entry in index {
            buf.resize(usize::try_from(entry.length).unwrap_or(0), 0);
            (self.device).read_slot(part.region, entry.image_offset, &mut buf)?;
            present.push(entry.matches(&buf));
            done += entry.length;
            self.progress.update(done, 0);
        }
        self.progress.finish();
        let kept = present.iter().filter(|&&p| p).count();
        log::info!(
            "resuming: {kept} of {} chunks are already in {}",
            index.len(),
            part.region
        );
        Ok(present)
    }
}

/// An index decoded with a partition's size as the image limit.
fn decode(
    bytes: &[u8],
    partition_length: u64,
) -> std::result::Result<ChunkIndex, flipside_contract::index::Error> {
    let limits = Limits {
        max_image_length: partition_length,
        ..Limits::default()
    };
    ChunkIndex::decode(bytes, &limits)
}

/// The index must describe the signed image (length, sha256) and the signed bundle (length).
pub(super) fn check_index(
    index: &ChunkIndex,
    target: &TargetInfo,
    image_length: u64,
    image_sha256: &str,
    bundle_length: u64,
) -> Result<()> {
    let mismatch = |why: String| Error::IndexMismatch {
        target: target.name.to_string(),
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
