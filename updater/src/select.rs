//! The update decision, pure: from the verified targets and the installed release, the bundle
//! to install (if any). Anti-rollback: a release below the installed one is refused unless the
//! operator passes [`Downgrade::Allow`], which still verifies everything, or its publisher
//! signed it with `allow_rollback`; [`above_floor`] then applies the device's persistent floor,
//! which no device flag lowers.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use flipside_contract::arch::Architecture;
use flipside_contract::release::{TargetCustom, TargetKind, CUSTOM_KEY};
use flipside_contract::rollout::{self, Admission};

use crate::error::{Error, Result};
use crate::floor::{self, Floor};
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
    /// A newer release is published for this device, but its rollout has not reached it.
    Waiting { version: u64, admission: Admission },
}

/// What this device may be offered: its channel, a pinned version, its place in the fleet
/// ([`flipside_contract::rollout::place`]) and the time rollouts are read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub channel: String,
    /// Only this version; a pinned device takes it whatever the rollout (its operator chose).
    pub pin: Option<u64>,
    pub place: u32,
    pub now: DateTime<Utc>,
}

/// What a device waiting for release `version` is told.
pub fn describe_wait(version: u64, admission: Admission) -> String {
    match admission {
        Admission::Open => format!("release {version} is open to this device"),
        Admission::OpensAt(t) => format!(
            "release {version} is rolling out; this device's wave opens at {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Admission::Paused => {
            format!("release {version} is rolling out; its rollout is paused before this device")
        }
        Admission::Never => {
            format!("release {version} is rolling out; its schedule does not reach this device")
        }
    }
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

/// The bundles of releases for this system and hardware id in the device's channel (and of
/// its pinned version), newest first; equal versions (never published by flipside-build) by
/// name order. `Err` lists what the repository has instead.
fn offered(
    targets: &[TargetInfo],
    installed: &Installed,
    offer: &Offer,
) -> std::result::Result<Vec<Candidate>, String> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for target in targets {
        let Ok(custom) = custom_of(target) else {
            continue;
        };
        if custom.kind != TargetKind::Bundle || custom.bundle_target != target.name.as_str() {
            continue;
        }
        let channels = match custom.channels.is_empty() {
            true => rollout::DEFAULT_CHANNEL.to_string(),
            false => custom.channels.join("+"),
        };
        let built_for = match custom.architecture == Architecture::HOST {
            true => String::new(),
            false => format!(", built for {}", custom.architecture),
        };
        seen.insert(format!(
            "{} {} for {} in {channels}{built_for}",
            custom.name, custom.version, custom.hardware_id
        ));
        if custom.name != installed.name
            || custom.hardware_id != installed.hardware_id
            || custom.architecture != Architecture::HOST
            || !rollout::in_channel(&custom.channels, &offer.channel)
            || offer.pin.is_some_and(|pin| pin != custom.version)
        {
            continue;
        }
        found.push(Candidate {
            bundle: target.clone(),
            custom,
        });
    }
    if found.is_empty() {
        return Err(match seen.is_empty() {
            true => "it has no flipside releases".into(),
            false => format!("it has {}", seen.into_iter().collect::<Vec<_>>().join(", ")),
        });
    }
    found.sort_by(|a, b| {
        (b.custom.version, &a.bundle.name).cmp(&(a.custom.version, &b.bundle.name))
    });
    Ok(found)
}

/// Whether the rollout of `c` admits this device now (a pinned device: always).
fn admission(c: &Candidate, offer: &Offer) -> Admission {
    match (&c.custom.rollout, offer.pin) {
        (Some(r), None) => r.admission(offer.place, offer.now),
        _ => Admission::Open,
    }
}

/// Chooses the newest bundle for this system and hardware id that the device's channel, pin
/// and place in the rollout allow; see the module doc. Targets without valid flipside fields
/// are ignored (they may be other software).
pub fn choose(
    targets: &[TargetInfo],
    installed: &Installed,
    downgrade: Downgrade,
    offer: &Offer,
) -> Result<Decision> {
    let candidates = offered(targets, installed, offer).map_err(|found| Error::Incompatible {
        system: installed.name.clone(),
        hardware_id: installed.hardware_id.clone(),
        architecture: Architecture::HOST,
        channel: offer.channel.clone(),
        pin: offer.pin,
        found,
    })?;
    let newest = Decision::Waiting {
        version: candidates[0].custom.version,
        admission: admission(&candidates[0], offer),
    };
    let newest_version = candidates[0].custom.version;
    let best = candidates
        .into_iter()
        .find(|c| admission(c, offer) == Admission::Open);
    let Some(best) = best else {
        // Nothing admitted yet: a newer release waits; an older one is no offer.
        return Ok(match newest_version > installed.version {
            true => newest,
            false => Decision::UpToDate {
                version: installed.version,
            },
        });
    };
    let version = best.custom.version;
    match version.cmp(&installed.version) {
        std::cmp::Ordering::Greater => Ok(Decision::Update(Box::new(best))),
        // A newer release (or the installed one) is still rolling out: rollouts gate upgrades,
        // they never send a device back.
        _ if newest_version > installed.version => Ok(newest),
        _ if newest_version == installed.version => Ok(Decision::UpToDate {
            version: installed.version,
        }),
        std::cmp::Ordering::Equal => Ok(Decision::UpToDate { version }),
        // The publisher signed this rollback: no device flag is needed.
        std::cmp::Ordering::Less if best.custom.allow_rollback => {
            Ok(Decision::Update(Box::new(best)))
        }
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

/// The device's anti-rollback floor ([`crate::floor`]) over a decision: an update below it is
/// refused unless its publisher allowed the rollback. `path` names where the floor is kept.
pub fn above_floor(decision: Decision, floor: Option<Floor>, path: &Path) -> Result<Decision> {
    match (&decision, floor) {
        (Decision::Update(c), Some(f))
            if !floor::admits(Some(f), c.custom.version, c.custom.allow_rollback) =>
        {
            Err(Error::BelowFloor {
                offered: c.custom.version,
                floor: f.version,
                path: path.to_path_buf(),
            })
        }
        _ => Ok(decision),
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
        .find(|t| t.name.as_str() == chosen.custom.index_target)
        .ok_or_else(|| mismatch("the targets metadata does not list it".into()))?;
    let custom = custom_of(index).map_err(mismatch)?;
    let same = custom.kind == TargetKind::Index
        && custom.name == chosen.custom.name
        && custom.version == chosen.custom.version
        && custom.hardware_id == chosen.custom.hardware_id
        && custom.image_sha256 == chosen.custom.image_sha256
        && custom.image_length == chosen.custom.image_length
        && custom.bundle_target == chosen.bundle.name.as_str();
    if !same {
        return Err(mismatch(
            "its flipside fields describe another release".into(),
        ));
    }
    Ok(index)
}

/// The kernel part of a chosen release: its bundle and index targets, found by the names the
/// root bundle's signed fields give and checked to describe the same release and the same
/// kernel part. `Ok(None)` for a release without a kernel part.
pub fn kernel_part_of(targets: &[TargetInfo], chosen: &Candidate) -> Result<Option<KernelPick>> {
    let Some(kernel) = chosen.custom.kernel.as_ref() else {
        return Ok(None);
    };
    let find = |name: &str, kind: TargetKind| -> Result<(TargetInfo, TargetCustom)> {
        let mismatch = |why: String| Error::IndexMismatch {
            target: name.to_string(),
            why,
        };
        let target = targets
            .iter()
            .find(|t| t.name.as_str() == name)
            .ok_or_else(|| mismatch("the targets metadata does not list it".into()))?;
        let custom = custom_of(target).map_err(mismatch)?;
        let same = custom.kind == kind
            && custom.name == chosen.custom.name
            && custom.version == chosen.custom.version
            && custom.hardware_id == chosen.custom.hardware_id
            && custom.kernel.as_ref() == Some(kernel)
            && custom.image_sha256 == kernel.image_sha256
            && custom.image_length == kernel.image_length
            && custom.bundle_target == kernel.bundle_target
            && custom.index_target == kernel.index_target;
        if !same {
            return Err(mismatch(
                "its flipside fields describe another release or kernel".into(),
            ));
        }
        Ok((target.clone(), custom))
    };
    let (bundle, custom) = find(&kernel.bundle_target, TargetKind::KernelBundle)?;
    let (index, _) = find(&kernel.index_target, TargetKind::KernelIndex)?;
    Ok(Some(KernelPick {
        bundle,
        index,
        custom,
    }))
}

/// The kernel part's targets of a chosen release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPick {
    pub bundle: TargetInfo,
    pub index: TargetInfo,
    /// The kernel bundle's fields: its image is the UKI.
    pub custom: TargetCustom,
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
                && c.index_target == t.name.as_str()
                && c.name == installed.name
                && c.hardware_id == installed.hardware_id
                && c.version == installed.version
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipside_contract::release::{KernelTargets, RELEASE_FORMAT};
    use flipside_contract::rollout::{Rollout, Wave};

    fn custom(kind: TargetKind, name: &str, hw: &str, version: u64) -> TargetCustom {
        TargetCustom {
            format: RELEASE_FORMAT,
            kind,
            name: name.into(),
            version,
            display_version: format!("{version}.0"),
            hardware_id: hw.into(),
            architecture: Architecture::HOST,
            filesystem: "squashfs".into(),
            image_length: 4096,
            image_sha256: "ab".repeat(32),
            index_target: format!("{name}-{version}.index"),
            bundle_target: format!("{name}-{version}.bundle"),
            kernel: None,
            allow_rollback: false,
            channels: Vec::new(),
            rollout: None,
        }
    }

    fn target(c: &TargetCustom) -> TargetInfo {
        let name = match c.kind {
            TargetKind::Bundle | TargetKind::KernelBundle => c.bundle_target.clone(),
            TargetKind::Index | TargetKind::KernelIndex => c.index_target.clone(),
        };
        TargetInfo {
            name: flipside_tuf::client::TargetName::new(&name).unwrap(),
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

    /// A release with a kernel part: root bundle and index, kernel bundle and index.
    fn release_with_kernel(version: u64) -> Vec<TargetInfo> {
        let kernel = KernelTargets {
            kernel_release: "6.1.0-57-amd64".into(),
            image_length: 8192,
            image_sha256: "cd".repeat(32),
            bundle_target: format!("kiosk-{version}.kernel.bundle"),
            index_target: format!("kiosk-{version}.kernel.index"),
        };
        let with = |kind: TargetKind| {
            let mut c = custom(kind, "kiosk", "pc", version);
            if kind.is_kernel() {
                c.filesystem = "uki".into();
                c.image_length = kernel.image_length;
                c.image_sha256 = kernel.image_sha256.clone();
                c.bundle_target = kernel.bundle_target.clone();
                c.index_target = kernel.index_target.clone();
            }
            c.kernel = Some(kernel.clone());
            c
        };
        [
            TargetKind::Bundle,
            TargetKind::Index,
            TargetKind::KernelBundle,
            TargetKind::KernelIndex,
        ]
        .map(|k| target(&with(k)))
        .to_vec()
    }

    fn chosen_of(targets: &[TargetInfo]) -> Candidate {
        match choose(targets, &installed(1), Downgrade::Refuse, &stable()).unwrap() {
            Decision::Update(c) => *c,
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn kernel_part_is_found_and_checked_against_the_root_bundle() {
        let targets = release_with_kernel(3);
        let c = chosen_of(&targets);
        assert_eq!(
            c.bundle.name.as_str(),
            "kiosk-3.bundle",
            "a kernel bundle is never the release"
        );
        let pick = kernel_part_of(&targets, &c).unwrap().unwrap();
        assert_eq!(pick.bundle.name.as_str(), "kiosk-3.kernel.bundle");
        assert_eq!(pick.index.name.as_str(), "kiosk-3.kernel.index");
        assert_eq!(pick.custom.image_length, 8192);
        // Without a kernel part: none.
        let plain = release("kiosk", "pc", 3);
        assert_eq!(kernel_part_of(&plain, &chosen_of(&plain)).unwrap(), None);

        // A missing kernel target, or one whose fields disagree, refuses the release.
        for (which, break_it) in [
            (2usize, "missing"),
            (3, "missing"),
            (2, "other sha"),
            (3, "other version"),
            (2, "wrong kind"),
        ] {
            let mut t = release_with_kernel(3);
            match break_it {
                "missing" => {
                    t.remove(which);
                }
                _ => {
                    let mut c: TargetCustom = serde_json::from_value(
                        t[which].custom.as_ref().unwrap()[CUSTOM_KEY].clone(),
                    )
                    .unwrap();
                    match break_it {
                        "other sha" => c.image_sha256 = "ef".repeat(32),
                        "other version" => c.version = 4,
                        _ => c.kind = TargetKind::KernelIndex,
                    }
                    t[which].custom = Some(serde_json::json!({ CUSTOM_KEY: c }));
                }
            }
            let c = chosen_of(&t);
            assert!(
                matches!(kernel_part_of(&t, &c), Err(Error::IndexMismatch { .. })),
                "{which} {break_it}"
            );
        }
    }

    /// A device following stable, unpinned, at the middle of the fleet, on 2026-06-01.
    fn stable() -> Offer {
        Offer {
            channel: "stable".into(),
            pin: None,
            place: 5_000,
            now: "2026-06-01T00:00:00Z".parse().unwrap(),
        }
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
            other => panic!("no update: {other:?}"),
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
        let d = choose(&targets, &installed(4), Downgrade::Refuse, &stable()).unwrap();
        assert_eq!(chosen(d.clone()), 9);
        let Decision::Update(c) = d else {
            unreachable!()
        };
        assert_eq!(
            index_of(&targets, &c).unwrap().name.as_str(),
            "kiosk-9.index"
        );
        assert_eq!(
            choose(&targets, &installed(9), Downgrade::Refuse, &stable()).unwrap(),
            Decision::UpToDate { version: 9 }
        );
        assert_eq!(
            installed_index(&targets, &installed(5))
                .unwrap()
                .name
                .as_str(),
            "kiosk-5.index"
        );
        assert!(installed_index(&targets, &installed(4)).is_none());
    }

    /// The release's targets, signed as a deliberate rollback.
    fn rollback_release(version: u64) -> Vec<TargetInfo> {
        [TargetKind::Bundle, TargetKind::Index]
            .map(|kind| {
                let mut c = custom(kind, "kiosk", "pc", version);
                c.allow_rollback = true;
                target(&c)
            })
            .to_vec()
    }

    /// Every (newest, installed, device flag, publisher flag) combination over a small range.
    #[test]
    fn anti_rollback_exhaustively() {
        for newest in 1..=5u64 {
            for signed in [false, true] {
                let mut targets: Vec<TargetInfo> = (1..newest)
                    .flat_map(|v| release("kiosk", "pc", v))
                    .collect();
                targets.extend(if signed {
                    rollback_release(newest)
                } else {
                    release("kiosk", "pc", newest)
                });
                anti_rollback_case(&targets, newest, signed);
            }
        }
    }

    fn anti_rollback_case(targets: &[TargetInfo], newest: u64, signed: bool) {
        for inst in 1..=5u64 {
            for flag in [Downgrade::Refuse, Downgrade::Allow] {
                let got = choose(targets, &installed(inst), flag, &stable());
                match (newest.cmp(&inst), flag) {
                    (std::cmp::Ordering::Greater, _)
                    | (std::cmp::Ordering::Less, Downgrade::Allow) => {
                        assert_eq!(chosen(got.unwrap()), newest)
                    }
                    (std::cmp::Ordering::Less, Downgrade::Refuse) if signed => {
                        assert_eq!(chosen(got.unwrap()), newest, "the publisher allowed it")
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

    /// Every (offered, floor, publisher flag) combination: below the floor only when signed.
    #[test]
    fn the_floor_refuses_what_the_publisher_did_not_allow() {
        let path = Path::new("/state/floor.json");
        for offered in 1..=4u64 {
            for signed in [false, true] {
                let targets = if signed {
                    rollback_release(offered)
                } else {
                    release("kiosk", "pc", offered)
                };
                let decision =
                    choose(&targets, &installed(0), Downgrade::Refuse, &stable()).unwrap();
                assert_eq!(above_floor(decision.clone(), None, path).unwrap(), decision);
                for floor in 1..=4u64 {
                    let got = above_floor(decision.clone(), Some(Floor { version: floor }), path);
                    if offered >= floor || signed {
                        assert_eq!(got.unwrap(), decision);
                    } else {
                        assert!(matches!(
                            got,
                            Err(Error::BelowFloor { offered: o, floor: f, .. }) if o == offered && f == floor
                        ));
                    }
                }
            }
        }
        let up_to_date = Decision::UpToDate { version: 1 };
        let floor = Some(Floor { version: 9 });
        assert_eq!(
            above_floor(up_to_date.clone(), floor, path).unwrap(),
            up_to_date
        );
    }

    #[test]
    fn other_hardware_or_system_is_incompatible() {
        let targets = [release("kiosk", "arm", 9), release("other", "pc", 9)].concat();
        match choose(&targets, &installed(1), Downgrade::Allow, &stable()) {
            Err(Error::Incompatible { found, .. }) => {
                assert!(
                    found.contains("kiosk 9 for arm in stable")
                        && found.contains("other 9 for pc in stable"),
                    "{found}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            choose(&[], &installed(1), Downgrade::Refuse, &stable()),
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
            name: flipside_tuf::client::TargetName::new("readme").unwrap(),
            length: 1,
            sha256: [0; 32],
            custom: None,
        });
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse, &stable()).unwrap()),
            2
        );
    }

    #[test]
    fn index_of_a_different_release_is_refused() {
        let mut targets = release("kiosk", "pc", 3);
        let mut bad = custom(TargetKind::Index, "kiosk", "pc", 3);
        bad.image_sha256 = "cd".repeat(32);
        targets[1] = target(&bad);
        let Decision::Update(c) =
            choose(&targets, &installed(1), Downgrade::Refuse, &stable()).unwrap()
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

    /// A release of kiosk for pc with these channels and this rollout.
    fn published(version: u64, channels: &[&str], rollout: Option<Rollout>) -> Vec<TargetInfo> {
        [TargetKind::Bundle, TargetKind::Index]
            .map(|kind| {
                let mut c = custom(kind, "kiosk", "pc", version);
                c.channels = channels.iter().map(|s| s.to_string()).collect();
                c.rollout = rollout.clone();
                target(&c)
            })
            .to_vec()
    }

    /// Half the fleet from 2026-05-01, the whole fleet from 2026-07-01.
    fn halves() -> Rollout {
        Rollout {
            waves: vec![
                Wave {
                    start: "2026-05-01T00:00:00Z".parse().unwrap(),
                    share: 5_000,
                },
                Wave {
                    start: "2026-07-01T00:00:00Z".parse().unwrap(),
                    share: 10_000,
                },
            ],
            paused_at: None,
        }
    }

    #[test]
    fn a_device_takes_only_releases_of_its_channel() {
        let targets = [
            published(2, &[], None),
            published(3, &["beta"], None),
            published(4, &["beta", "stable"], None),
            published(5, &["beta"], None),
        ]
        .concat();
        let beta = Offer {
            channel: "beta".into(),
            ..stable()
        };
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse, &stable()).unwrap()),
            4
        );
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse, &beta).unwrap()),
            5
        );
        let edge = Offer {
            channel: "edge".into(),
            ..stable()
        };
        let err = choose(&targets, &installed(1), Downgrade::Refuse, &edge).unwrap_err();
        assert!(
            matches!(&err, Error::Incompatible { channel, .. } if channel == "edge"),
            "{err:?}"
        );
        assert!(err.to_string().contains("kiosk 5 for pc in beta"), "{err}");
    }

    #[test]
    fn a_pinned_device_takes_its_version_only_whatever_the_rollout() {
        let paused = Rollout {
            paused_at: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            ..halves()
        };
        let targets = [
            published(2, &[], None),
            published(3, &[], Some(paused)),
            published(4, &[], None),
        ]
        .concat();
        let pin = |v| Offer {
            pin: Some(v),
            ..stable()
        };
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse, &pin(3)).unwrap()),
            3
        );
        assert_eq!(
            choose(&targets, &installed(3), Downgrade::Refuse, &pin(3)).unwrap(),
            Decision::UpToDate { version: 3 }
        );
        // Pinned below the installed release: a downgrade, refused without the flag.
        assert!(matches!(
            choose(&targets, &installed(4), Downgrade::Refuse, &pin(2)),
            Err(Error::Rollback { offered: 2, .. })
        ));
        let err = choose(&targets, &installed(1), Downgrade::Refuse, &pin(7)).unwrap_err();
        assert!(
            matches!(err, Error::Incompatible { pin: Some(7), .. }),
            "{err:?}"
        );
    }

    /// Places on both sides of every wave, at instants before, between and after the waves:
    /// the newest admitted release is installed, a newer one not yet admitted is reported as
    /// waiting, never installed.
    #[test]
    fn waves_admit_each_place_in_its_turn() {
        let targets = [published(2, &[], None), published(3, &[], Some(halves()))].concat();
        let at = |place: u32, now: &str| Offer {
            place,
            now: now.parse().unwrap(),
            ..stable()
        };
        let opens = |t: &str| Admission::OpensAt(t.parse().unwrap());
        let cases = [
            (0, "2026-04-30T23:59:59Z", 2, opens("2026-05-01T00:00:00Z")),
            (4_999, "2026-05-01T00:00:00Z", 3, Admission::Open),
            (
                5_000,
                "2026-05-01T00:00:00Z",
                2,
                opens("2026-07-01T00:00:00Z"),
            ),
            (
                9_999,
                "2026-06-30T23:59:59Z",
                2,
                opens("2026-07-01T00:00:00Z"),
            ),
            (9_999, "2026-07-01T00:00:00Z", 3, Admission::Open),
        ];
        for (place, now, expected, admission) in cases {
            let offer = at(place, now);
            // From release 1: the newest admitted one.
            let d = choose(&targets, &installed(1), Downgrade::Refuse, &offer).unwrap();
            assert_eq!(chosen(d), expected, "{place} at {now}");
            // From release 2: 3 when admitted, else a wait naming when.
            let d = choose(&targets, &installed(2), Downgrade::Refuse, &offer).unwrap();
            match admission {
                Admission::Open => assert_eq!(chosen(d), 3, "{place} at {now}"),
                _ => assert_eq!(
                    d,
                    Decision::Waiting {
                        version: 3,
                        admission
                    },
                    "{place} at {now}"
                ),
            }
        }
    }

    #[test]
    fn a_paused_rollout_holds_the_devices_it_has_not_reached() {
        let paused = Rollout {
            paused_at: Some("2026-05-15T00:00:00Z".parse().unwrap()),
            ..halves()
        };
        let targets = [published(2, &[], None), published(3, &[], Some(paused))].concat();
        let late = Offer {
            place: 7_000,
            now: "2026-08-01T00:00:00Z".parse().unwrap(),
            ..stable()
        };
        assert_eq!(
            choose(&targets, &installed(2), Downgrade::Refuse, &late).unwrap(),
            Decision::Waiting {
                version: 3,
                admission: Admission::Paused
            }
        );
        let early = Offer {
            place: 10,
            ..late.clone()
        };
        assert_eq!(
            chosen(choose(&targets, &installed(2), Downgrade::Refuse, &early).unwrap()),
            3
        );
        // A device already past the paused release stays up to date.
        assert_eq!(
            choose(&targets, &installed(3), Downgrade::Refuse, &late).unwrap(),
            Decision::UpToDate { version: 3 }
        );
    }

    /// A release built for another architecture is never offered, whatever its version; the
    /// refusal names the architecture.
    #[test]
    fn releases_of_another_architecture_are_not_offered() {
        let other = match Architecture::HOST {
            Architecture::X86_64 => Architecture::Aarch64,
            Architecture::Aarch64 => Architecture::X86_64,
        };
        let foreign = |version: u64| {
            [TargetKind::Bundle, TargetKind::Index]
                .map(|kind| {
                    let mut c = custom(kind, "kiosk", "pc", version);
                    c.architecture = other;
                    target(&c)
                })
                .to_vec()
        };
        let mut targets = foreign(9);
        let err = choose(&targets, &installed(1), Downgrade::Refuse, &stable()).unwrap_err();
        assert!(
            err.to_string().contains(&format!("built for {other}")),
            "{err}"
        );
        targets.extend(release("kiosk", "pc", 2));
        assert_eq!(
            chosen(choose(&targets, &installed(1), Downgrade::Refuse, &stable()).unwrap()),
            2
        );
    }
}
