//! Key counts, thresholds and expiry periods: the settings `init` takes, and the expiry
//! periods the repository keeps for later operations (`flipside-repository.json`).

use std::collections::BTreeMap;

use chrono::TimeDelta;
use flipside_tuf::Role;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest expiry period accepted, in days (100 years).
pub const MAX_EXPIRY_DAYS: u32 = 36_500;

/// Default expiry periods: root and targets are signed offline, rarely; snapshot and timestamp
/// online, often (timestamp daily, by a scheduled `repo resign`).
pub fn default_expiry_days(role: Role) -> u32 {
    match role {
        Role::Root => 365,
        Role::Targets => 90,
        Role::Snapshot => 7,
        Role::Timestamp => 1,
    }
}

/// Settings of one role for `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSettings {
    /// Number of ed25519 keys (at least 1).
    pub keys: usize,
    /// Signatures required (1 to `keys`).
    pub threshold: u64,
    /// Validity of each new version of the role's metadata, in days.
    pub expiry_days: u32,
}

/// Settings of every top-level role for `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSettings {
    pub roles: BTreeMap<Role, RoleSettings>,
}

impl Default for InitSettings {
    /// One key and threshold 1 per role; the default expiry periods.
    fn default() -> Self {
        InitSettings {
            roles: Role::ALL
                .into_iter()
                .map(|role| {
                    let settings = RoleSettings {
                        keys: 1,
                        threshold: 1,
                        expiry_days: default_expiry_days(role),
                    };
                    (role, settings)
                })
                .collect(),
        }
    }
}

impl InitSettings {
    /// The settings of a role (defaults for a role not listed).
    pub fn role(&self, role: Role) -> RoleSettings {
        self.roles.get(&role).copied().unwrap_or(RoleSettings {
            keys: 1,
            threshold: 1,
            expiry_days: default_expiry_days(role),
        })
    }

    /// Checks every role: keys >= 1, 1 <= threshold <= keys, expiry within range.
    pub fn validate(&self) -> Result<(), Error> {
        for role in Role::ALL {
            let s = self.role(role);
            let why = if s.keys == 0 {
                Some(format!("the {role} role needs at least one key"))
            } else if s.threshold == 0 {
                Some(format!("the {role} threshold must be at least 1"))
            } else if s.threshold > s.keys as u64 {
                Some(format!(
                    "the {role} threshold {} is above its number of keys {}; raise the keys with --keys-per-role {role}=N",
                    s.threshold, s.keys
                ))
            } else {
                check_days(role, s.expiry_days).err()
            };
            if let Some(why) = why {
                return Err(Error::Settings { why });
            }
        }
        Ok(())
    }

    /// The expiry periods kept in the repository.
    pub fn policy(&self) -> Policy {
        Policy {
            format: POLICY_FORMAT,
            expiry_days: Role::ALL
                .into_iter()
                .map(|r| (r, self.role(r).expiry_days))
                .collect(),
        }
    }
}

fn check_days(role: Role, days: u32) -> Result<(), String> {
    if (1..=MAX_EXPIRY_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(format!(
            "the {role} expiry must be 1 to {MAX_EXPIRY_DAYS} days, not {days}"
        ))
    }
}

const POLICY_FORMAT: u32 = 1;

/// What the repository remembers between operations: the expiry period of each role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub format: u32,
    pub expiry_days: BTreeMap<Role, u32>,
}

impl Default for Policy {
    fn default() -> Self {
        InitSettings::default().policy()
    }
}

impl Policy {
    /// Validity of new metadata of `role`.
    pub fn valid_for(&self, role: Role) -> TimeDelta {
        let days = self
            .expiry_days
            .get(&role)
            .copied()
            .unwrap_or_else(|| default_expiry_days(role));
        TimeDelta::days(i64::from(days))
    }

    /// Parses and checks the settings file.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        let policy: Policy = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if policy.format != POLICY_FORMAT {
            return Err(format!(
                "format {} is not supported (this build reads format {POLICY_FORMAT}); upgrade flipside",
                policy.format
            ));
        }
        for (role, days) in &policy.expiry_days {
            check_days(*role, *days)?;
        }
        Ok(policy)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(role: Role, keys: usize, threshold: u64, expiry_days: u32) -> InitSettings {
        let mut s = InitSettings::default();
        s.roles.insert(
            role,
            RoleSettings {
                keys,
                threshold,
                expiry_days,
            },
        );
        s
    }

    #[test]
    fn defaults_are_valid() {
        let s = InitSettings::default();
        s.validate().unwrap();
        let p = s.policy();
        assert_eq!(p.valid_for(Role::Root), TimeDelta::days(365));
        assert_eq!(p.valid_for(Role::Timestamp), TimeDelta::days(1));
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for role in Role::ALL {
            for (keys, threshold, days, ok) in [
                (1, 1, 1, true),
                (3, 2, MAX_EXPIRY_DAYS, true),
                (3, 3, 30, true),
                (0, 0, 30, false),
                (1, 0, 30, false),
                (2, 3, 30, false),
                (1, 1, 0, false),
                (1, 1, MAX_EXPIRY_DAYS + 1, false),
            ] {
                let got = with(role, keys, threshold, days).validate();
                assert_eq!(got.is_ok(), ok, "{role} {keys} {threshold} {days}: {got:?}");
            }
        }
    }

    #[test]
    fn policy_round_trip_and_checks() {
        let p = with(Role::Targets, 1, 1, 30).policy();
        let back = Policy::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.valid_for(Role::Targets), TimeDelta::days(30));
        assert!(Policy::from_slice(br#"{"format":2,"expiry_days":{}}"#).is_err());
        assert!(Policy::from_slice(br#"{"format":1,"expiry_days":{"root":0}}"#).is_err());
        assert!(Policy::from_slice(b"[").is_err());
    }
}
