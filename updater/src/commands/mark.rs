//! `flipside mark-good` and `flipside mark-bad`: judge the running trial slot by hand. Both act
//! only on the slot that is actually running on trial.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::Event;

use super::{open_running, record};

/// S=1 on the running trial slot.
pub fn good(config: &Config, why: &str) -> Result<()> {
    let (mut device, running) = open_running(config)?;
    if !device.state().is_on_trial(running) {
        return Err(Error::NotOnTrial {
            running,
            action: "mark good",
        });
    }
    let next = device.state().mark_good(running)?;
    device.commit(&next)?;
    record(config, Event::Committed, running, why.to_string())?;
    println!("slot {running} marked good: it is now the proven slot");
    Ok(())
}

/// P=0 on the running trial slot, so that the other slot boots next.
pub fn bad(config: &Config, why: &str) -> Result<()> {
    let (mut device, running) = open_running(config)?;
    if !device.state().is_on_trial(running) {
        return Err(Error::NotOnTrial {
            running,
            action: "mark bad (use flipside rollback to leave a proven slot)",
        });
    }
    let next = device.state().mark_bad(running)?;
    device.commit(&next)?;
    record(config, Event::MarkedBad, running, why.to_string())?;
    println!(
        "slot {running} marked bad: slot {} boots next; reboot",
        !running
    );
    Ok(())
}
