//! `flipside update`: what the update timer runs. Install the newest release this device is
//! offered (channel, pin, rollout), then reboot into it as `update.reboot` allows: now, inside
//! the maintenance window, or never. A reboot that is due outside the window waits for a
//! later run; a trial under way is left to the health check.

use chrono::Local;

use crate::config::Config;
use crate::device::Device;
use crate::error::Result;
use crate::health;
use crate::install::{install, InstallOptions};
use crate::running::running_slot;
use crate::source::SourceFactory;
use crate::window::{self, RebootDecision};

pub fn run(config: &Config, factory: &SourceFactory) -> Result<()> {
    let device = Device::open(&config.device, false)?;
    let running = running_slot(&config.device, device.state())?;
    if device.state().is_on_trial(running) {
        println!("on trial in slot {running}: the health check decides first; nothing to do");
        return Ok(());
    }
    // A slot armed by an earlier run still waits for its reboot: no new install.
    if !device.state().is_trial_pending() {
        drop(device);
        let outcome = install(config, &InstallOptions::default(), factory)?;
        super::install::report(config, outcome);
    }
    let due = Device::open(&config.device, false)?
        .state()
        .is_trial_pending();
    let now = Local::now().naive_local();
    match window::decide(
        config.update.reboot,
        config.update.window.as_ref(),
        due,
        now,
    ) {
        RebootDecision::NotNeeded => Ok(()),
        RebootDecision::LeftToOperator => {
            println!("reboot to try the new slot (update.reboot = \"never\": left to you)");
            Ok(())
        }
        RebootDecision::Wait { opens } => {
            println!(
                "reboot due: the maintenance window opens at {} local time",
                opens.format("%Y-%m-%d %H:%M")
            );
            println!("FLIPSIDE_RESULT event=reboot-waiting");
            Ok(())
        }
        RebootDecision::Reboot => {
            println!("rebooting to try the new slot");
            println!("FLIPSIDE_RESULT event=rebooting");
            health::reboot(&config.health.reboot_command, config.health.reboot_timeout)
        }
    }
}
