//! Changing who may take a published release: its channels and its rollout (start, pause,
//! resume), by re-signing its targets' custom fields. The release's files stay as they are.

use chrono::{DateTime, Utc};
use flipside_contract::release::{TargetCustom, CUSTOM_KEY};
use flipside_contract::rollout::Rollout;

use super::{Published, Repository};
use crate::keys::KeyDir;
use crate::state::{load, DirSource};
use crate::{plan, Error};

use super::ONLINE;

/// A change to the publishing decisions of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amend {
    /// Offer the release in exactly these channels (none: `stable`).
    Channels(Vec<String>),
    /// Replace the rollout schedule; `None` offers the release to every device at once.
    Rollout(Option<Rollout>),
    /// Stop the rollout growing from `now` on (devices it reached keep the release).
    Pause,
    /// Let a paused rollout go on along its schedule.
    Resume,
}

impl Amend {
    /// Applies the change to one target's fields (pure).
    fn apply(&self, custom: &mut TargetCustom, now: DateTime<Utc>) -> Result<(), Error> {
        match self {
            Amend::Channels(channels) => custom.channels = channels.clone(),
            Amend::Rollout(rollout) => custom.rollout = rollout.clone(),
            Amend::Pause => {
                rollout_of(custom)?.paused_at.get_or_insert(now);
            }
            Amend::Resume => rollout_of(custom)?.paused_at = None,
        }
        custom
            .validate()
            .map_err(|e| Error::Rollout { why: e.to_string() })
    }
}

/// The rollout of a release, which pausing and resuming need.
fn rollout_of(c: &mut TargetCustom) -> Result<&mut Rollout, Error> {
    let name = format!("{} {}", c.name, c.version);
    c.rollout.as_mut().ok_or_else(|| Error::Rollout {
        why: format!("{name} has no rollout to pause or resume: it is open to every device; withdraw it to stop it"),
    })
}

impl Repository {
    /// Applies `change` to every target of release `version` of system `name`, in new
    /// targets, snapshot and timestamp versions. Nothing changes (and nothing is published)
    /// when the release already is as asked.
    pub fn amend(
        &mut self,
        keys: &KeyDir,
        name: &str,
        version: u64,
        change: &Amend,
        now: DateTime<Utc>,
    ) -> Result<Published, Error> {
        let policy = self.policy()?;
        let trusted = load(&DirSource { repo: &self.dir }, now, &ONLINE)?;
        let mut targets = plan::next_targets(&trusted, &policy, now)?;
        let mut found = false;
        let mut changed = false;
        for target in targets.targets.values_mut() {
            let Some(value) = target.custom.as_mut().and_then(|c| c.get_mut(CUSTOM_KEY)) else {
                continue;
            };
            let Ok(mut custom) = serde_json::from_value::<TargetCustom>(value.clone()) else {
                continue;
            };
            if custom.name != name || custom.version != version {
                continue;
            }
            found = true;
            let before = custom.clone();
            change.apply(&mut custom, now)?;
            if custom != before {
                changed = true;
                *value = serde_json::to_value(&custom).map_err(|e| Error::Rollout {
                    why: format!("cannot serialize the new fields: {e}"),
                })?;
            }
        }
        if !found {
            return Err(Error::NoSuchRelease {
                name: name.to_string(),
                version,
            });
        }
        if !changed {
            return Ok(super::unchanged(&trusted));
        }
        let versions = self.publish_targets(keys, &trusted, targets, &policy, now)?;
        Ok(Published {
            changed: true,
            versions,
            added: Vec::new(),
            withdrawn: Vec::new(),
            new_keys: Vec::new(),
            retired: Vec::new(),
            newer: None,
        })
    }
}
