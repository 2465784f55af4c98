//! `flipside rollback`: make the other slot boot next, when it is bootable.

use crate::config::Config;
use crate::device::Device;
use crate::error::Result;
use crate::record::Event;

use super::record;

pub fn run(config: &Config) -> Result<()> {
    let mut device = Device::open(&config.device, true)?;
    let current = device.state().boots_next()?;
    let next = device.state().rollback()?;
    device.commit(&next)?;
    let target = !current;
    record(
        config,
        Event::RolledBack,
        target,
        format!("by hand: slot {target} boots next instead of slot {current}"),
    )?;
    println!("slot {target} boots next; reboot to use it");
    Ok(())
}
