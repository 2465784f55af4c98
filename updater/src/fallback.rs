//! A trial that never came back. When the new slot cannot start (no init, a panic, a hang
//! reset by the watchdog) no flipside process runs on it, so nothing records the failure: the
//! bootloader spends its tries and falls back. The next run on the old slot recognises the
//! pattern from the last recorded step and the boot bits, so `status` can say what happened.
//! Pure.

use flipside_bootloader_hooks::{BootAttrs, Slot};

use crate::record::{Event, Outcome};

/// The `fell-back` outcome when `last` armed the other slot for a trial, that slot has no
/// boot left (not bootable, never marked good), and the running slot is proven; else `None`.
pub fn failed_trial(
    last: Option<&Outcome>,
    running: Slot,
    running_attrs: BootAttrs,
    other_attrs: BootAttrs,
) -> Option<Outcome> {
    let last = last?;
    let other = !running;
    let armed_other = last.event == Event::Installed && last.slot == other.name();
    if !armed_other
        || other_attrs.is_bootable()
        || other_attrs.successful()
        || !running_attrs.successful()
    {
        return None;
    }
    let what = last.version.map_or(format!("slot {other}"), |v| {
        format!("version {v} in slot {other}")
    });
    Some(Outcome {
        time: last.time,
        event: Event::FellBack,
        slot: other.name().into(),
        version: last.version,
        display_version: last.display_version.clone(),
        detail: format!(
            "{what} used up its trial boots without passing its health checks (it did not \
             start, hung or rebooted): the bootloader fell back to slot {running}"
        ),
        class: None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn outcome(event: Event, slot: Slot) -> Outcome {
        Outcome {
            time: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            event,
            slot: slot.name().into(),
            version: Some(4),
            display_version: Some("4.0".into()),
            detail: String::new(),
            class: None,
        }
    }

    fn all_attrs() -> impl Iterator<Item = BootAttrs> {
        (0..=15u8).flat_map(|p| {
            (0..=15u8).flat_map(move |t| [false, true].map(|s| BootAttrs::new(p, t, s).unwrap()))
        })
    }

    const EVENTS: [Event; 6] = [
        Event::Installed,
        Event::InstallFailed,
        Event::Committed,
        Event::MarkedBad,
        Event::RolledBack,
        Event::FellBack,
    ];

    /// Every last step, slot, and pair of boot bits: a fallback is reported exactly when an
    /// install armed the other slot, that slot is dead and unproven, and this one is proven.
    #[test]
    fn reported_exactly_for_a_dead_armed_slot_beside_a_proven_one() {
        let mut reported = 0;
        for running in Slot::ALL {
            for event in EVENTS {
                for acted_on in Slot::ALL {
                    let last = outcome(event, acted_on);
                    for ra in all_attrs() {
                        for oa in all_attrs() {
                            let got = failed_trial(Some(&last), running, ra, oa);
                            let want = event == Event::Installed
                                && acted_on == !running
                                && !oa.is_bootable()
                                && !oa.successful()
                                && ra.successful();
                            assert_eq!(got.is_some(), want, "{event:?} {acted_on} {ra:?} {oa:?}");
                            if let Some(o) = got {
                                reported += 1;
                                assert_eq!(o.event, Event::FellBack);
                                assert_eq!(o.slot, (!running).name());
                                assert_eq!(o.version, Some(4));
                                assert!(o.detail.contains("fell back to slot"), "{}", o.detail);
                            }
                        }
                    }
                }
            }
        }
        assert!(reported > 0);
    }

    #[test]
    fn nothing_recorded_means_nothing_to_report() {
        let proven = BootAttrs::new(1, 0, true).unwrap();
        let dead = BootAttrs::new(0, 0, false).unwrap();
        assert_eq!(failed_trial(None, Slot::A, proven, dead), None);
    }
}
