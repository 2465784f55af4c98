//! `flipside health`: run the health checks; on a trial boot, commit the slot when they pass,
//! or mark it bad and reboot into the other slot when one fails.

use crate::config::{Config, NoChecks};
use crate::error::{Error, Result};
use crate::health::{reboot, run_checks, CheckOutcome};
use flipside_bootloader_hooks::Slot;

use crate::device::Device;
use crate::fallback::failed_trial;
use crate::record::{Event, StateDir};

use super::{open_running, record};

pub fn run(config: &Config) -> Result<()> {
    let (mut device, running) = open_running(config)?;
    let on_trial = device.state().is_on_trial(running);
    if !on_trial {
        record_fallback(config, &device, running)?;
    }
    let results = run_checks(&config.health.dir, config.health.timeout);
    if results.is_empty() && config.health.no_checks == NoChecks::Refuse {
        return Err(Error::NoHealthChecks {
            dir: config.health.dir.clone(),
            running,
            on_trial,
        });
    }
    let failure = results.iter().find_map(|r| match &r.outcome {
        CheckOutcome::Passed => None,
        CheckOutcome::Failed(how) => Some((r.name.clone(), how.clone())),
        CheckOutcome::TimedOut(t) => Some((r.name.clone(), format!("killed after {t:?}"))),
        CheckOutcome::CannotRun(why) => Some((r.name.clone(), format!("cannot run: {why}"))),
    });
    let passed = match results.len() {
        0 => "no checks configured, health.no_checks = \"commit\"".to_string(),
        n => format!("{n} health checks passed"),
    };
    let Some((check, why)) = failure else {
        if on_trial {
            let next = device.state().mark_good(running)?;
            device.commit(&next)?;
            record(config, Event::Committed, running, passed.clone())?;
            println!("healthy: slot {running} committed ({passed})");
        } else {
            println!("healthy: slot {running} is proven, nothing to commit ({passed})");
        }
        return Ok(());
    };
    let failed = Error::HealthFailed { check, why };
    if on_trial {
        let next = device.state().mark_bad(running)?;
        device.commit(&next)?;
        record(config, Event::MarkedBad, running, failed.to_string())?;
        log::error!(
            "{failed}: slot {running} marked bad, rebooting into slot {}",
            !running
        );
        reboot(&config.health.reboot_command, config.health.reboot_timeout)?;
    } else {
        log::error!("{failed}: slot {running} is proven; its boot state is left as it is");
    }
    Err(failed)
}

/// On a proven slot: keeps a trial of the other slot that never came back in the record, so
/// that the next install does not erase the only trace of it without a word.
fn record_fallback(config: &Config, device: &Device, running: Slot) -> Result<()> {
    let state_dir = StateDir::new(&config.device.state_dir);
    let state = device.state();
    let last = state_dir.last()?;
    if let Some(fell) = failed_trial(
        last.as_ref(),
        running,
        state.attrs(running),
        state.attrs(!running),
    ) {
        log::warn!("{}", fell.detail);
        state_dir.set_last(&fell)?;
    }
    Ok(())
}
