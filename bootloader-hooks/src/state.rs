//! Boot state of both slots and its transitions, all in memory.
//!
//! Nothing here reads or writes a disk: every transition takes the state by reference and returns
//! a new one (or a typed error, leaving the old one as it was). Persisting a state is the job of
//! [`crate::disk`]. The rules follow ChromeOS firmware and update_engine:
//!
//! - firmware side, [`BootState::select`]: candidates have P>0 and (S=1 or T>0); the highest P wins,
//!   a tie goes to the lower partition number; choosing a slot with S=0 consumes a try before it
//!   boots (T>1 becomes T-1; T=1 becomes T=0 and P=0, so one more failure falls back); a slot with
//!   S=1 is never changed.
//! - updater side: [`BootState::clear_for_write`] before writing a slot,
//!   [`BootState::arm_for_trial`] once its image is written and verified,
//!   [`BootState::mark_good`] / [`BootState::mark_bad`] after the health check, and
//!   [`BootState::rollback`] on request.

use core::fmt;

use alloc::string::String;

use uuid::Uuid;

use crate::attrs::BootAttrs;
use crate::error::{Error, Result};
use crate::slot::Slot;

/// Priority given to the slot that should boot next (a fresh trial or the proven running slot).
pub const PRIORITY_TOP: u8 = 2;
/// Priority given to the proven slot kept as the fallback below [`PRIORITY_TOP`].
pub const PRIORITY_FALLBACK: u8 = 1;

/// Which GPT partition holds a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPartition {
    /// Partition number, 1-based (entry index in the GPT + 1), as in `/dev/vda3`.
    pub number: u32,
    /// The partition's unique GUID (PARTUUID).
    pub partuuid: Uuid,
    /// The GPT partition name.
    pub label: String,
}

/// A slot's partition and its boot attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    pub partition: SlotPartition,
    pub attrs: BootAttrs,
}

/// What [`BootState::select`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The slot to boot.
    pub slot: Slot,
    /// The slot is not yet successful: a try was consumed and this boot is a trial.
    pub trial: bool,
    /// Tries left on the slot after this boot (0 for a proven slot, which does not use tries).
    pub tries_left: u8,
}

/// Both slots' boot state. Construct with [`BootState::new`]; change only through transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootState {
    a: SlotState,
    b: SlotState,
}

impl BootState {
    /// Pairs the two slots; they must be different partitions.
    pub fn new(a: SlotState, b: SlotState) -> Result<Self> {
        if a.partition.number == b.partition.number {
            return Err(Error::SamePartition {
                index: a.partition.number,
            });
        }
        Ok(Self { a, b })
    }

    /// One slot's partition and attributes.
    pub fn slot(&self, slot: Slot) -> &SlotState {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    /// One slot's attributes.
    pub fn attrs(&self, slot: Slot) -> BootAttrs {
        self.slot(slot).attrs
    }

    /// The slot whose partition has this PARTUUID, e.g. to tell which slot booted now from the
    /// kernel command line.
    pub fn slot_by_partuuid(&self, partuuid: Uuid) -> Option<Slot> {
        Slot::ALL
            .into_iter()
            .find(|&s| self.slot(s).partition.partuuid == partuuid)
    }

    /// A copy with `slot`'s attributes replaced as given, unchecked. For provisioning and tests;
    /// the updater uses the checked transitions. Memory only.
    pub fn with_attrs(&self, slot: Slot, attrs: BootAttrs) -> Self {
        let mut next = self.clone();
        next.slot_mut(slot).attrs = attrs;
        next
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut SlotState {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// The slot firmware boots next, without consuming a try.
    pub fn boots_next(&self) -> Result<Slot> {
        let (a, b) = (self.a.attrs, self.b.attrs);
        match (a.is_bootable(), b.is_bootable()) {
            (false, false) => Err(Error::NoBootableSlot { a, b }),
            (true, false) => Ok(Slot::A),
            (false, true) => Ok(Slot::B),
            (true, true) => Ok(if a.priority() != b.priority() {
                if a.priority() > b.priority() {
                    Slot::A
                } else {
                    Slot::B
                }
            } else if self.a.partition.number < self.b.partition.number {
                Slot::A
            } else {
                Slot::B
            }),
        }
    }

    /// Firmware selection: picks the slot to boot and consumes a try if it is on trial.
    /// Returns the choice and the state to persist before booting. Memory only.
    pub fn select(&self) -> Result<(Selection, BootState)> {
        Ok(self.boot(self.boots_next()?))
    }

    /// Firmware fallback after `failed`'s kernel could not be loaded or started in this boot:
    /// the other slot, if it is a candidate, consuming its try if it is on trial. `failed` is
    /// never changed (a proven slot keeps S=1; a trial slot has already spent this boot's try),
    /// so a kernel that fails to load costs tries like any failed boot and never a proven slot.
    /// Memory only.
    pub fn select_other(&self, failed: Slot) -> Result<(Selection, BootState)> {
        let other = !failed;
        let attrs = self.attrs(other);
        if !attrs.is_bootable() {
            return Err(Error::NoBootableSlot {
                a: self.a.attrs,
                b: self.b.attrs,
            });
        }
        Ok(self.boot(other))
    }

    /// The choice of `slot` (a candidate) and the state after its try, if any, is consumed.
    fn boot(&self, slot: Slot) -> (Selection, BootState) {
        let attrs = self.attrs(slot);
        if attrs.successful() {
            let choice = Selection {
                slot,
                trial: false,
                tries_left: 0,
            };
            return (choice, self.clone());
        }
        let consumed = consume_try(attrs);
        let choice = Selection {
            slot,
            trial: true,
            tries_left: consumed.tries(),
        };
        (choice, self.with_attrs(slot, consumed))
    }

    /// Whether some slot is armed for a trial that has not been judged yet (P>0, T>0, S=0).
    ///
    /// A trial slot booting on its last try reads P=0,T=0,S=0 once the try is consumed; to ask
    /// about the running slot, use [`BootState::is_on_trial`].
    pub fn is_trial_pending(&self) -> bool {
        Slot::ALL
            .into_iter()
            .any(|s| self.attrs(s).is_trial_armed())
    }

    /// Whether the running slot booted as a trial (S=0): it still needs `mark_good`/`mark_bad`.
    pub fn is_on_trial(&self, running: Slot) -> bool {
        !self.attrs(running).successful()
    }

    /// Before writing an image into `slot`: P=0,T=0,S=0 on it, so a power cut mid-write never
    /// leaves a half-written slot bootable. Refused while a trial is pending and when the other
    /// slot is not a proven fallback. Memory only.
    pub fn clear_for_write(&self, slot: Slot) -> Result<BootState> {
        self.check_no_trial_pending()?;
        self.check_fallback(slot)?;
        Ok(self.with_attrs(slot, self.attrs(slot).cleared()))
    }

    /// After `slot`'s image is written and verified: P=top, T=`tries`, S=0 on it, and the other
    /// (proven) slot lowered to the fallback priority, so it still boots when the tries run out.
    /// `tries` must be 1..=15; the slot must have been cleared. Memory only.
    pub fn arm_for_trial(&self, slot: Slot, tries: u8) -> Result<BootState> {
        if tries == 0 || tries > BootAttrs::MAX_TRIES {
            return Err(Error::FieldOutOfRange {
                field: "tries",
                value: tries,
                min: 1,
                max: BootAttrs::MAX_TRIES,
            });
        }
        let attrs = self.attrs(slot);
        if !attrs.is_cleared() {
            return Err(Error::SlotNotCleared { slot, attrs });
        }
        self.check_fallback(slot)?;
        let armed = attrs
            .with_priority(PRIORITY_TOP)?
            .with_tries(tries)?
            .with_successful(false);
        let other = self.attrs(!slot).with_priority(PRIORITY_FALLBACK)?;
        Ok(self.with_attrs(slot, armed).with_attrs(!slot, other))
    }

    /// After a healthy trial boot of `running`: S=1, T=0, P=top on it (also when its last try set
    /// P=0), the other slot lowered to the fallback priority if it was higher. Refused when
    /// `running` is not on trial. Memory only.
    pub fn mark_good(&self, running: Slot) -> Result<BootState> {
        let attrs = self.attrs(running);
        if attrs.successful() {
            return Err(Error::NotOnTrial {
                slot: running,
                attrs,
            });
        }
        let good = attrs
            .with_priority(PRIORITY_TOP)?
            .with_tries(0)?
            .with_successful(true);
        let other_attrs = self.attrs(!running);
        let other = other_attrs.with_priority(other_attrs.priority().min(PRIORITY_FALLBACK))?;
        Ok(self.with_attrs(running, good).with_attrs(!running, other))
    }

    /// After a failed health check of `running`: P=0,T=0,S=0 on it, so the other slot boots next.
    /// Refused when the other slot is not bootable. Memory only.
    pub fn mark_bad(&self, running: Slot) -> Result<BootState> {
        let other_attrs = self.attrs(!running);
        if !other_attrs.is_bootable() {
            return Err(Error::NoFallback {
                slot: running,
                other: !running,
                other_attrs,
            });
        }
        Ok(self.with_attrs(running, self.attrs(running).cleared()))
    }

    /// Makes the slot that does not boot next boot next (P=top), keeping the current one as a
    /// fallback (P lowered to the fallback priority; a proven slot stays bootable). Refused when
    /// that slot is not bootable. Memory only.
    pub fn rollback(&self) -> Result<BootState> {
        let current = self.boots_next()?;
        let target = !current;
        let target_attrs = self.attrs(target);
        if !target_attrs.is_bootable() {
            return Err(Error::RollbackTargetNotBootable {
                slot: target,
                attrs: target_attrs,
            });
        }
        let cur = self.attrs(current);
        let lowered = cur.with_priority(cur.priority().min(PRIORITY_FALLBACK))?;
        let raised = target_attrs.with_priority(PRIORITY_TOP)?;
        Ok(self.with_attrs(current, lowered).with_attrs(target, raised))
    }

    fn check_no_trial_pending(&self) -> Result<()> {
        match Slot::ALL
            .into_iter()
            .find(|&s| self.attrs(s).is_trial_armed())
        {
            Some(slot) => Err(Error::TrialPending {
                slot,
                attrs: self.attrs(slot),
            }),
            None => Ok(()),
        }
    }

    fn check_fallback(&self, slot: Slot) -> Result<()> {
        let other_attrs = self.attrs(!slot);
        if other_attrs.is_proven() {
            Ok(())
        } else {
            Err(Error::NoFallback {
                slot,
                other: !slot,
                other_attrs,
            })
        }
    }
}

/// The try firmware consumes when it boots a slot with S=0: T>1 -> T-1; T=1 -> T=0 and P=0.
/// A slot with S=1 is returned unchanged.
pub fn consume_try(attrs: BootAttrs) -> BootAttrs {
    if attrs.successful() || attrs.tries() == 0 {
        return attrs;
    }
    if attrs.tries() == 1 {
        attrs.cleared()
    } else {
        // tries() is 2..=15 here, so tries-1 always fits.
        BootAttrs::from_raw(attrs.raw() - (1u64 << 52))
    }
}

impl fmt::Display for BootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, slot) in Slot::ALL.into_iter().enumerate() {
            let s = self.slot(slot);
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "slot {slot}: partition {} ({}, PARTUUID {}): {}",
                s.partition.number,
                s.partition.label,
                s.partition.partuuid.hyphenated(),
                s.attrs
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(p: u8, t: u8, s: bool) -> BootAttrs {
        BootAttrs::new(p, t, s).unwrap()
    }

    fn state(a: BootAttrs, b: BootAttrs) -> BootState {
        let part = |number: u32, label: &str| SlotPartition {
            number,
            partuuid: Uuid::from_u128(u128::from(number)),
            label: label.to_string(),
        };
        BootState::new(
            SlotState {
                partition: part(2, "root-a"),
                attrs: a,
            },
            SlotState {
                partition: part(3, "root-b"),
                attrs: b,
            },
        )
        .unwrap()
    }

    fn pts(s: &BootState, slot: Slot) -> (u8, u8, bool) {
        let a = s.attrs(slot);
        (a.priority(), a.tries(), a.successful())
    }

    #[test]
    fn consume_try_follows_firmware() {
        assert_eq!(consume_try(attrs(2, 3, false)), attrs(2, 2, false));
        assert_eq!(consume_try(attrs(2, 1, false)), attrs(0, 0, false));
        assert_eq!(consume_try(attrs(2, 5, true)), attrs(2, 5, true));
        // Other bits survive the last try.
        let raw = BootAttrs::from_raw(0x8000_0000_0000_0001 | attrs(4, 1, false).raw());
        assert_eq!(consume_try(raw).raw(), 0x8000_0000_0000_0001);
    }

    #[test]
    fn tie_goes_to_lower_partition_number() {
        let s = state(attrs(1, 0, true), attrs(1, 0, true));
        assert_eq!(s.boots_next().unwrap(), Slot::A);
        let part = |number: u32| SlotPartition {
            number,
            partuuid: Uuid::nil(),
            label: String::new(),
        };
        let swapped = BootState::new(
            SlotState {
                partition: part(5),
                attrs: attrs(1, 0, true),
            },
            SlotState {
                partition: part(4),
                attrs: attrs(1, 0, true),
            },
        )
        .unwrap();
        assert_eq!(swapped.boots_next().unwrap(), Slot::B);
    }

    #[test]
    fn same_partition_is_refused() {
        let s = state(attrs(1, 0, true), attrs(0, 0, false));
        assert!(matches!(
            BootState::new(s.a.clone(), s.a.clone()),
            Err(Error::SamePartition { index: 2 })
        ));
    }

    #[test]
    fn install_trial_good() {
        let s = state(
            attrs(PRIORITY_TOP, 0, true),
            attrs(PRIORITY_FALLBACK, 0, true),
        );
        let s = s.clear_for_write(Slot::B).unwrap();
        assert_eq!(pts(&s, Slot::B), (0, 0, false));
        assert_eq!(s.boots_next().unwrap(), Slot::A);
        let s = s.arm_for_trial(Slot::B, 3).unwrap();
        assert_eq!(pts(&s, Slot::B), (PRIORITY_TOP, 3, false));
        assert_eq!(pts(&s, Slot::A), (PRIORITY_FALLBACK, 0, true));
        assert!(s.is_trial_pending());
        let (choice, s) = s.select().unwrap();
        assert_eq!(
            choice,
            Selection {
                slot: Slot::B,
                trial: true,
                tries_left: 2
            }
        );
        assert!(s.is_on_trial(Slot::B));
        let s = s.mark_good(Slot::B).unwrap();
        assert_eq!(pts(&s, Slot::B), (PRIORITY_TOP, 0, true));
        assert_eq!(pts(&s, Slot::A), (PRIORITY_FALLBACK, 0, true));
        assert!(!s.is_trial_pending());
        let (choice, after) = s.select().unwrap();
        assert_eq!((choice.slot, choice.trial), (Slot::B, false));
        assert_eq!(after, s);
    }

    #[test]
    fn trial_bad_returns_to_old_slot() {
        let s = state(attrs(2, 0, true), attrs(1, 0, true))
            .clear_for_write(Slot::B)
            .unwrap()
            .arm_for_trial(Slot::B, 2)
            .unwrap();
        let (_, s) = s.select().unwrap();
        let s = s.mark_bad(Slot::B).unwrap();
        assert_eq!(pts(&s, Slot::B), (0, 0, false));
        assert_eq!(s.boots_next().unwrap(), Slot::A);
        assert_eq!(pts(&s, Slot::A), (1, 0, true));
    }

    #[test]
    fn exhausted_tries_return_to_old_slot() {
        let mut s = state(attrs(2, 0, true), attrs(1, 0, true))
            .clear_for_write(Slot::A)
            .unwrap()
            .arm_for_trial(Slot::A, 3)
            .unwrap();
        for left in (0..3).rev() {
            let (choice, next) = s.select().unwrap();
            assert_eq!(
                (choice.slot, choice.trial, choice.tries_left),
                (Slot::A, true, left)
            );
            s = next;
        }
        let (choice, _) = s.select().unwrap();
        assert_eq!((choice.slot, choice.trial), (Slot::B, false));
    }

    #[test]
    fn good_on_last_try_restores_priority() {
        let s = state(attrs(1, 0, true), attrs(2, 1, false));
        let (choice, s) = s.select().unwrap();
        assert_eq!((choice.slot, choice.tries_left), (Slot::B, 0));
        assert_eq!(pts(&s, Slot::B), (0, 0, false));
        assert!(!s.is_trial_pending());
        assert!(s.is_on_trial(Slot::B));
        let s = s.mark_good(Slot::B).unwrap();
        assert_eq!(s.boots_next().unwrap(), Slot::B);
        assert_eq!(pts(&s, Slot::A), (1, 0, true));
    }

    #[test]
    fn second_update_while_trial_pending_is_refused() {
        let s = state(attrs(1, 0, true), attrs(2, 3, false));
        for slot in Slot::ALL {
            assert!(matches!(
                s.clear_for_write(slot),
                Err(Error::TrialPending { slot: Slot::B, .. })
            ));
        }
    }

    #[test]
    fn clearing_needs_a_proven_fallback() {
        // The other slot is the last-try trial that booted (P=0 after consuming): no fallback.
        let s = state(attrs(1, 0, true), attrs(0, 0, false));
        assert!(matches!(
            s.clear_for_write(Slot::A),
            Err(Error::NoFallback {
                slot: Slot::A,
                other: Slot::B,
                ..
            })
        ));
        assert!(s.clear_for_write(Slot::B).is_ok());
    }

    #[test]
    fn arming_checks_tries_and_clearing() {
        let s = state(attrs(2, 0, true), attrs(1, 0, true));
        assert!(matches!(
            s.arm_for_trial(Slot::B, 1),
            Err(Error::SlotNotCleared { slot: Slot::B, .. })
        ));
        let s = s.clear_for_write(Slot::B).unwrap();
        for bad in [0, 16, 255] {
            assert!(matches!(
                s.arm_for_trial(Slot::B, bad),
                Err(Error::FieldOutOfRange {
                    field: "tries",
                    min: 1,
                    ..
                })
            ));
        }
        assert!(matches!(
            s.arm_for_trial(Slot::A, 1),
            Err(Error::SlotNotCleared { slot: Slot::A, .. })
        ));
        assert!(s.arm_for_trial(Slot::B, 15).is_ok());
    }

    #[test]
    fn mark_good_needs_a_trial() {
        let s = state(attrs(2, 0, true), attrs(1, 0, true));
        assert!(matches!(
            s.mark_good(Slot::A),
            Err(Error::NotOnTrial { slot: Slot::A, .. })
        ));
    }

    #[test]
    fn mark_bad_needs_a_bootable_other() {
        let s = state(attrs(0, 0, false), attrs(2, 1, false));
        assert!(matches!(
            s.mark_bad(Slot::B),
            Err(Error::NoFallback { other: Slot::A, .. })
        ));
    }

    #[test]
    fn rollback_switches_and_keeps_fallback() {
        let s = state(attrs(1, 0, true), attrs(2, 0, true));
        let r = s.rollback().unwrap();
        assert_eq!(r.boots_next().unwrap(), Slot::A);
        assert_eq!(pts(&r, Slot::B), (1, 0, true));
        assert_eq!(r.rollback().unwrap().boots_next().unwrap(), Slot::B);

        let lone = state(attrs(0, 0, false), attrs(2, 0, true));
        assert!(matches!(
            lone.rollback(),
            Err(Error::RollbackTargetNotBootable { slot: Slot::A, .. })
        ));
        let none = state(attrs(0, 0, false), attrs(0, 3, true));
        assert!(matches!(none.rollback(), Err(Error::NoBootableSlot { .. })));
    }

    #[test]
    fn transitions_keep_other_bits() {
        let other_bits = 0x9000_0000_0000_0004u64;
        let a = BootAttrs::from_raw(other_bits | attrs(2, 0, true).raw());
        let b = BootAttrs::from_raw(other_bits | attrs(1, 0, true).raw());
        let s = state(a, b)
            .clear_for_write(Slot::B)
            .unwrap()
            .arm_for_trial(Slot::B, 2)
            .unwrap();
        let (_, s) = s.select().unwrap();
        let s = s.mark_good(Slot::B).unwrap().rollback().unwrap();
        for slot in Slot::ALL {
            assert_eq!(s.attrs(slot).raw() & 0xfe00_ffff_ffff_ffff, other_bits);
        }
    }

    #[test]
    fn lookup_by_partuuid_and_display() {
        let s = state(attrs(2, 0, true), attrs(0, 0, false));
        assert_eq!(s.slot_by_partuuid(Uuid::from_u128(3)), Some(Slot::B));
        assert_eq!(s.slot_by_partuuid(Uuid::from_u128(9)), None);
        let text = s.to_string();
        assert!(text.starts_with("slot a: partition 2 (root-a"), "{text}");
        assert!(text.contains("slot b: partition 3 (root-b"), "{text}");
    }
}
