//! The update decision, pure: from the verified targets and the installed release, the bundle
//! to install (if any). Anti-rollback: a release below the installed one is refused unless the
//! operator passes [`Downgrade::Allow`], which still verifies everything.

use std::collections::BTreeSet;

use flipside_contract::release::{TargetCustom, TargetKind, CUSTOM_KEY};

use crate::error::{Error, Result};
use crate::source::TargetInfo;
use crate::system::Installed;

/// Whether an older release may be installed. The safe value is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Downgrade {
    #[default]
    Refuse,
    /// `--allow-downgrade`: install the repository's newest release even when it is older.
    Allow,
}

/// A bundle target with its parsed flipside fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub bundle: TargetInfo,
    pub custom: TargetCustom,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The newest compatible release is the installed one.
    UpToDate { version: u64 },
    /// Install this bundle.
    Update(Box<Candidate>),
}

/// The target's flipside fields, if it has valid ones.
pub fn custom_of(target: &TargetInfo) -> std::result::Result<TargetCustom, String> {
    let value = target
        .custom
        .as_ref()
        .and_then(|c| c.get(CUSTOM_KEY))
        .ok_or_else(|| format!("no custom.{CUSTOM_KEY} object"))?;
    let custom: TargetCustom =
        serde_json::from_value(value.clone()).map_err(|e| format!("custom.{CUSTOM_KEY}: {e}"))?;
    custom.validate().map_err(|e| e.to_string())?;
    Ok(custom)
}

/// Chooses the newest bundle for this system and hardware id; see the module doc. Targets
/// without valid flipside fields are ignored (they may be other software).
pub fn choose(
    targets: &[TargetInfo],
    installed: &Installed,
    downgrade: Downgrade,
) -> Result<Decision> {
    let mut seen = BTreeSet::new();
    let mut best: Option<Candidate> = None;
    for target in targets {
        let Ok(custom) = custom_of(target) else {
            continue;
        };
        if custom.kind != TargetKind::Bundle || custom.bundle_target != target.name {
            continue;
        }
        seen.insert(format!("{} for {}", custom.name, custom.hardware_id));
        if custom.name != installed.name || custom.hardware_id != installed.hardware_id {
            continue;
        }
        // Highest version; equal versions (never published by flipside-build) by name order.
        let better = best.as_ref().is_none_or(|b| {
            (custom.version, std::cmp::Reverse(&target.name))
                > (b.custom.version, std::cmp::Reverse(&b.bundle.name))
        });
        if better {
            best = Some(Candidate {
                bundle: target.clone(),
                custom,
            });
        }
    }
    let Some(best) = best else {
        return Err(Error::Incompatible {
            system: installed.name.clone(),
            hardware_id: installed.hardware_id.clone(),
            found: if seen.is_empty() {
                "it has no flipside releases".into()
            } else {
                format!("it has {}", seen.into_iter().collect::<Vec<_>>().join(", "))
            },
        });
    };
    let version = best.custom.version;
    match version.cmp(&installed.version) {
        std::cmp::Ordering::Greater => Ok(Decision::Update(Box::new(best))),
        std::cmp::Ordering::Equal => Ok(Decision::UpToDate { version }),
        std::cmp::Ordering::Less => match downgrade {
            Downgrade::Allow => Ok(Decision::Update(Box::new(best))),
            Downgrade::Refuse => Err(Error::Rollback {
                what: "the repository's newest release",
                offered: version,
                installed: installed.version,
            }),
        },
    }
}

/// The index target of a chosen bundle, checked to belong to the same release.
pub fn index_of<'a>(targets: &'a [TargetInfo], chosen: &Candidate) -> Result<&'a TargetInfo> {
    let mismatch = |why: String| Error::IndexMismatch {
        target: chosen.custom.index_target.clone(),
        why,
    };
    let index = targets
        .iter()
        .find(|t| t.name == chosen.custom.index_target)
        .ok_or_else(|| mismatch("the targets metadata does not list it".into()))?;
    let custom = custom_of(index).map_err(mismatch)?;
    let same = custom.kind == TargetKind::Index
        && custom.name == chosen.custom.name
        && custom.version == chosen.custom.version
        && custom.hardware_id == chosen.custom.hardware_id
        && custom.image_sha256 == chosen.custom.image_sha256
        && custom.image_length == chosen.custom.image_length
        && custom.bundle_target == chosen.bundle.name;
    if !same {
        return Err(mismatch(
            "its flipside fields describe another release".into(),
        ));
    }
    Ok(index)
}

/// The index target of the installed release, if the repository still lists it (the seed of
/// a delta from the running slot).
pub fn installed_index<'a>(
    targets: &'a [TargetInfo],
    installed: &Installed,
) -> Option<&'a TargetInfo> {
    targets.iter().find(|t| {
        custom_of(t).is_ok_and(|c| {
            c.kind == TargetKind::Index
                && c.index_target == t.name
                && c.name == installed.name
                && c.hardware_id == installed.hardware_id
                && c.version == installed.version
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipside_contract::release::RELEASE_FORMAT;

    fn custom(kind: TargetKind, name: &str, hw: &str, version: u64) -> TargetCustom {
        TargetCustom {
            format: RELEASE_FORMAT,
            kind,
            name: name.into(),
            version,
            display_version: format!("{version}.0"),
            hardware_id: hw.into(),
            filesystem: "squashfs".into(),
            image_length: 4096,
            image_sha256: "ab".repeat(32),
            index_target: format!("{name}-{version}.index"),
            bundle_target: format!("{name}-{version}.bundle"),
        }
    }

    fn target(c: &TargetCustom) -> TargetInfo {
        let name = match c.kind {
            TargetKind::Bundle => c.bundle_target.clone(),
            TargetKind::Index => c.index_target.clone(),
        };
        TargetInfo {
            name,
            length: 100,
            sha256: [1; 32],
            custom: Some(serde_json::json!({ CUSTOM_KEY: c })),
        }
    }

    fn release(name: &str, hw: &str, version: u64) -> Vec<TargetInfo> {
        vec![
            target(&custom(TargetKind::Bundle, name, hw, version)),
            target(&custom(TargetKind::Index, name, hw, version)),
        ]
    }

    fn installed(version: u64) -> Installed {
        Installed {
            name: "kiosk".into(),
            version,
            display_version: String::new(),
            hardware_id: "pc".into(),
        }
    }

    fn chosen(d: Decision) -> u64 {
        match d {
            Decision::Update(c) => c.custom.version,
            Decision::UpToDate { .. } => panic!("no update"),
        }
    }

    #[test]
    fn newest_compatible_above_installed_wins() {
        let mut targets = Vec::new();
        for v in [3, 9, 5] {
            targets.extend(release("kiosk", "pc", v));
        }
        targets.extend(release("kiosk", "arm", 12));
        targets.extend(release("other", "pc", 20));
        let d = choose(&targets, &installed(4), Downgrade::Refuse).unwrap();
        assert_eq!(chosen(d.clone()), 9);
        let Decision::Update(c) = d else {
            unreachable!()
        };
        assert_eq!(index_of(&targets, &c).unwrap().name, "kiosk-9.index");
        assert_eq!(
            choose(&targets, &installed(9), Downgrade::Refuse).unwrap(),
            Decision::UpToDate { version: 9 }
        );
        assert_eq!(
            installed_index(&targets, &installed(5)).unwrap().name,
            "kiosk-5.index"
        );
        assert!(installed_index(&targets, &installed(4)).is_none());
    }

    /// Every (newest, installed, flag) combination over a small range.
    #[test]
    fn anti_rollback_exhaustively() {
        for newest in 1..=5u64 {
            let targets: Vec<TargetInfo> = (1..=newest)
                .flat_map(|v| release("kiosk", "pc", v))
                .collect();
            for inst in 1..=5u64 {
                for flag in [Downgrade::Refuse, Downgrade::Allow] {
                    let got = choose(&targets, &installed(inst), flag);
                    match (newest.cmp(&inst), flag) {
                        (std::cmp::Ordering::Greater, _)
                        | (std::cmp::Ordering::Less, Downgrade::Allow) => {
                            assert_eq!(chosen(got.unwrap()), newest)
                        }
                        (std::cmp::Ordering::Equal, _) => {
                            assert_eq!(got.unwrap(), Decision::UpToDate { version: inst })
                        }
                        (std::cmp::Ordering::Less, Downgrade::Refuse) => assert!(matches!(
                            got,
                            Err(Error::Rollback { offered, installed, .. }) if offered == newest && installed == inst
                        )),
                    }
                }
            }
        }
    }

    #[test]
    fn other_hardware_or_system_is_incompatible() {
        let targets = [release("kiosk", "arm", 9), release("other", "pc", 9)].concat();
        match choose(&targets, &installed(1), Downgrade::Allow) {
            Err(Error::Incompatible { found, .. }) => {
                assert!(
                    found.contains("kiosk for arm") && found.contains("other for pc"),
                    "{found}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            choose(&[], &installed(1), Downgrade::Refuse),
            Err(Error::Incompatible { .. })
        ));
    }

    #[test]
    fn targets_without_valid_fields_are_ignored() {
        let mut targets = release("kiosk", "pc", 2);
        let mut no_version = target(&custom(TargetKind::Bundle, "kiosk", "pc", 7));
        if let Some(obj) = no_version
            .custom
            .as_mut()
            .and_then(|c| c.get_mut(CUSTOM_KEY))
            .and_then(|c| c.as_object_mut())
        {
            obj.remove("version");
        }
        targets.push(no_version);
        let mut future = custom(TargetKind::Bundle, "kiosk", "pc", 8);
        future.format = RELEASE_FORMAT + 1;
        targets.push(target(&future));
        targets.push(TargetInfo {
            name: "readme".into(),
            length: 1,
            sha256: [0; 32],
            custom: None,
        });
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse).unwrap()),
            2
        );
    }

    #[test]
    fn index_of_a_different_release_is_refused() {
        let mut targets = release("kiosk", "pc", 3);
        let mut bad = custom(TargetKind::Index, "kiosk", "pc", 3);
        bad.image_sha256 = "cd".repeat(32);
        targets[1] = target(&bad);
        let Decision::Update(c) = choose(&targets, &installed(1), Downgrade::Refuse).unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            index_of(&targets, &c),
            Err(Error::IndexMismatch { .. })
        ));
        targets.pop();
        assert!(matches!(
            index_of(&targets, &c),
            Err(Error::IndexMismatch { .. })
        ));
    }
}
