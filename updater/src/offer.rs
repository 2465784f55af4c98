//! What this device may be offered ([`Offer`]): its channel and pinned version from the
//! configuration, its place in rollouts from the machine id, and the time. The I/O edge of
//! [`crate::select`].

use chrono::{DateTime, Utc};
use flipside_contract::rollout::{self, FLEET};

use crate::config::Config;
use crate::select::Offer;

/// The offer for system `system` at `now`. A missing or empty machine id places the device
/// last in every rollout (it takes a release only when the whole fleet may), with a warning.
pub fn offer(config: &Config, system: &str, now: DateTime<Utc>) -> Offer {
    let path = &config.device.machine_id;
    let place = match std::fs::read(path) {
        Ok(seed) if !seed.trim_ascii().is_empty() => rollout::place(seed.trim_ascii(), system),
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(_) => "it is empty".into(),
            };
            log::warn!(
                "cannot read the machine id {} ({why}): this device takes a release only when its rollout reaches the whole fleet; set device.machine_id",
                path.display()
            );
            FLEET - 1
        }
    };
    Offer {
        channel: config.update.channel.clone(),
        pin: config.update.pin_version,
        place,
        now,
    }
}
