//! `flipside health`: run the health checks; on a trial boot, commit the slot when they pass,
//! or mark it bad and reboot into the other slot when one fails.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::{reboot, run_checks, CheckOutcome};
use crate::record::Event;

use super::{open_running, record};

pub fn run(config: &Config) -> Result<()> {
    let (mut device, running) = open_running(config)?;
    let on_trial = device.state().is_on_trial(running);
    let results = run_checks(&config.health.dir, config.health.timeout)?;
    let failure = results.iter().find_map(|r| match &r.outcome {
        CheckOutcome::Passed => None,
        CheckOutcome::Failed(how) => Some((r.name.clone(), how.clone())),
        CheckOutcome::TimedOut(t) => Some((r.name.clone(), format!("killed after {t:?}"))),
    });
    let Some((check, why)) = failure else {
        if on_trial {
            let next = device.state().mark_good(running)?;
            device.commit(&next)?;
            let detail = format!("{} health checks passed", results.len());
            record(config, Event::Committed, running, detail)?;
            println!(
                "healthy: slot {running} committed ({} checks passed)",
                results.len()
            );
        } else {
            println!(
                "healthy: slot {running} is proven, nothing to commit ({} checks passed)",
                results.len()
            );
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
        reboot(&config.health.reboot_command)?;
    } else {
        log::error!("{failed}: slot {running} is proven; its boot state is left as it is");
    }
    Err(failed)
}
