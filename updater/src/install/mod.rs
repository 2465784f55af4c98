//! `flipside install`: choose the release, then write it into the inactive slot so that nothing
//! unverified ever touches it and no failure leaves it bootable. The steps, in order, each a
//! function of [`steps::Run`] (the context they share) with a unit test over an in-memory
//! repository ([`crate::source::memory`]) and disk ([`crate::device::MemoryDisk`]):
//!
//! 1. **refuse**: a trial pending or no proven fallback, before anything is downloaded (the
//!    command holds the state directory's lock, `crate::lock`, for its whole run);
//! 2. **decide**: refresh the TUF metadata, choose the release for this device, and refuse one
//!    below the installed release (unless allowed) or below the persistent floor;
//! 3. **fetch index**: each part's chunk index (root image; the kernel part when the device has
//!    kernel partitions), refused if the part does not fit, TUF-verified, bounded by its signed
//!    length and checked against the release's signed fields;
//! 4. **clear**: the inactive slot P=0,T=0,S=0 on disk and its record forgotten, then the
//!    install journaled, before any write into the slot;
//! 5. **plan**: per part, where each chunk comes from: already in the slot (an interrupted
//!    install, re-hashed), the running slot's same part (a delta), a delta frame against a
//!    chunk of the running slot, or the bundle;
//! 6. **place**: copy, then rebuild chunks from delta frames against base chunks of the running
//!    slot (each base and each result checked; a failure falls back to the full frame), then
//!    stream the missing chunks: a segment (one large frame) where all its chunks are
//!    missing, else their frames with coalesced HTTP Range requests, each chunk decompressed
//!    and checked against the index before it is written at its offset;
//!    synced on a schedule with a durable high-water mark ([`crate::durable`]);
//! 7. **read back**: every part read past the page cache and checked against its sha256;
//! 8. **arm**: only then the slot armed for a trial boot (P=top, T=N, S=0, the other lowered);
//! 9. **record**: the slot's record and indexes, the journal removed, the outcome.
//!
//! The slot's kernel and root are one transaction: the boot bits live on the root partition and
//! stay P=0 until both parts are verified, so a power cut at any point leaves the running slot's
//! kernel and root untouched and the inactive slot unbootable.

mod delta;
mod parts;
mod place;
mod segment;
mod steps;
mod writer;

#[cfg(test)]
mod tests;

use flipside_bootloader_hooks::Slot;
use flipside_contract::rollout::Admission;

use crate::config::{Config, Mirror};
use crate::device::{Device, Readback};
use crate::error::Result;
use crate::running;
use crate::select::Downgrade;
use crate::source::{SourceFactory, SourceSpec};
use crate::system::installed;

use steps::{refuse, Run};

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

/// Runs an install: the device opened, the first refusals made before the repository is
/// reached, then the steps of [`Run`].
pub fn install(
    config: &Config,
    options: &InstallOptions,
    factory: &SourceFactory,
) -> Result<InstallOutcome> {
    let installed = installed(config)?;
    let mut device = Device::open(&config.device, true)?;
    let running = running::running_slot(&config.device, device.state())?;
    refuse(&device, !running)?;
    let mut source = factory(&source_spec(config, options.from.as_ref()))?;
    Run::new(config, &mut device, source.as_mut(), running, installed).run(options.downgrade)
}
