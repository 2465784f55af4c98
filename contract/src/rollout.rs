//! Who may take a release, when: channels and rollout waves, signed in each target's custom
//! fields (pure; no I/O).
//!
//! A rollout is a schedule of waves, in the manner of Bottlerocket's: "1% of the fleet after T,
//! 10% after T + 1 day, 100% after T + 3 days". Each device has a place in the fleet, a number
//! in `0..FLEET` derived from a seed that never leaves it ([`place`]); it takes the release
//! once a wave that covers its place has started. The publisher pauses a rollout by re-signing
//! the release with `paused_at` (the share stops growing at that instant) and resumes it by
//! re-signing without; aborting is withdrawing the release.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The fleet in basis points: a wave's share of 10,000 is the whole fleet.
pub const FLEET: u32 = 10_000;

/// The channel of a release published without one, and of a device configured without one.
pub const DEFAULT_CHANNEL: &str = "stable";

/// A rollout schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Waves in order of start; each covers a larger share than the one before.
    pub waves: Vec<Wave>,
    /// While set, the share stays what it was at this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
}

/// From `start` on, devices whose place is below `share` may take the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub start: DateTime<Utc>,
    /// Share of the fleet in basis points, 1..=[`FLEET`].
    pub share: u32,
}

/// What a rollout says to one device at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The device's wave has started.
    Open,
    /// The device's wave starts at this instant.
    OpensAt(DateTime<Utc>),
    /// The rollout is paused before reaching the device.
    Paused,
    /// No wave of the schedule covers the device (the schedule stops below 100%).
    Never,
}

/// A schedule that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("a rollout needs at least one wave")]
    NoWaves,
    #[error("wave {index}: a share of {share} basis points is outside 1..={FLEET}")]
    Share { index: usize, share: u32 },
    #[error("wave {index} must start after the wave before it and cover a larger share")]
    Order { index: usize },
}

impl Rollout {
    /// Checks that the waves start in order and grow.
    pub fn validate(&self) -> Result<(), RolloutError> {
        if self.waves.is_empty() {
            return Err(RolloutError::NoWaves);
        }
        for (index, wave) in self.waves.iter().enumerate() {
            if wave.share == 0 || wave.share > FLEET {
                return Err(RolloutError::Share {
                    index,
                    share: wave.share,
                });
            }
            if index > 0 {
                let before = self.waves[index - 1];
                if wave.start <= before.start || wave.share <= before.share {
                    return Err(RolloutError::Order { index });
                }
            }
        }
        Ok(())
    }

    /// The share of the fleet admitted at `now` (basis points).
    pub fn share_at(&self, now: DateTime<Utc>) -> u32 {
        let until = self.paused_at.map_or(now, |p| p.min(now));
        self.waves
            .iter()
            .filter(|w| w.start <= until)
            .map(|w| w.share)
            .max()
            .unwrap_or(0)
    }

    /// Whether the device at `place` may take the release at `now`, and if not, when.
    pub fn admission(&self, place: u32, now: DateTime<Utc>) -> Admission {
        if place < self.share_at(now) {
            return Admission::Open;
        }
        let Some(wave) = self.waves.iter().find(|w| place < w.share) else {
            return Admission::Never;
        };
        if self.paused_at.is_some() {
            Admission::Paused
        } else {
            Admission::OpensAt(wave.start)
        }
    }
}

/// The device's place in the fleet for the releases of system `system`: the first 8 bytes of
/// SHA-256 over a domain tag, the seed and the system name, modulo [`FLEET`]. The seed is the
/// device's machine id; only this number is derived from it, and it is never sent.
pub fn place(seed: &[u8], system: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(b"flipside rollout place\0")
        .chain_update(seed)
        .chain_update(b"\0")
        .chain_update(system.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(FLEET)) as u32
}

/// Whether a release published in `channels` (none: [`DEFAULT_CHANNEL`]) is offered to a
/// device following `channel`.
pub fn in_channel(channels: &[String], channel: &str) -> bool {
    if channels.is_empty() {
        channel == DEFAULT_CHANNEL
    } else {
        channels.iter().any(|c| c == channel)
    }
}

#[cfg(test)]
mod tests;
