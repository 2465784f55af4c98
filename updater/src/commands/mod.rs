//! One module per subcommand; each loads what it needs, acts, and prints its result.

pub mod check;
pub mod health;
pub mod install;
pub mod mark;
pub mod rollback;
pub mod status;
pub mod tuf;
pub mod update;

use chrono::Utc;
use flipside_bootloader_hooks::Slot;

use crate::config::Config;
use crate::device::Device;
use crate::error::Result;
use crate::floor;
use crate::record::{Event, Outcome, StateDir};
use crate::running::running_slot;

/// The disk opened read-write with the running slot found.
pub(crate) fn open_running(config: &Config) -> Result<(Device, Slot)> {
    let device = Device::open(&config.device, true)?;
    let running = running_slot(&config.device, device.state())?;
    Ok((device, running))
}

/// Records a boot-state step in the state directory; a commit also moves the anti-rollback
/// floor ([`crate::floor::after_commit`]).
pub(crate) fn record(config: &Config, event: Event, slot: Slot, detail: String) -> Result<()> {
    let state = StateDir::new(&config.device.state_dir);
    let release = state.slot_record(slot).ok().flatten();
    if let (Event::Committed, Some(r)) = (event, &release) {
        let floor = floor::after_commit(state.floor()?, r.version, r.allow_rollback);
        state.set_floor(floor)?;
    }
    state.set_last(&Outcome {
        time: Utc::now(),
        event,
        slot: slot.name().into(),
        version: release.as_ref().map(|r| r.version),
        display_version: release.map(|r| r.display_version),
        detail,
        class: None,
    })
}
