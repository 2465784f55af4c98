//! Exhaustive checks of firmware selection over every boot state of two slots
//! (P 0..=15, T 0..=15, S 0..=1 each: 512 x 512 states, both partition orders), against a rule
//! set written apart from the library, plus update sequences through the public API.

mod common;

use common::{attrs, reference_choice};
use flipside_bootloader_hooks::{
    BootAttrs, BootState, Error, Slot, SlotPartition, SlotState, PRIORITY_FALLBACK, PRIORITY_TOP,
};
use uuid::Uuid;

/// Bits outside P/T/S that every transition must carry through.
const NOISE: [u64; 2] = [0, 0x9200_0000_0000_0005];

fn state_with(numbers: (u32, u32), a: BootAttrs, b: BootAttrs) -> BootState {
    let slot = |number: u32, attrs| SlotState {
        partition: SlotPartition {
            number,
            partuuid: Uuid::from_u128(u128::from(number)),
            label: String::new(),
        },
        attrs,
    };
    BootState::new(slot(numbers.0, a), slot(numbers.1, b)).expect("distinct partitions")
}

fn all_attrs() -> impl Iterator<Item = BootAttrs> {
    (0u8..=15)
        .flat_map(|p| (0u8..=15).flat_map(move |t| [false, true].map(move |s| attrs(p, t, s))))
}

/// Every state of two slots, in both partition orders, with other bits set on every second
/// value: (partition numbers, a, b, state).
fn every_state() -> impl Iterator<Item = ((u32, u32), BootAttrs, BootAttrs, BootState)> {
    [(2u32, 3u32), (5, 4)].into_iter().flat_map(|numbers| {
        all_attrs().enumerate().flat_map(move |(i, a)| {
            let a = BootAttrs::from_raw(a.raw() | NOISE[i % 2]);
            all_attrs().enumerate().map(move |(j, b)| {
                let b = BootAttrs::from_raw(b.raw() | NOISE[j % 2]);
                (numbers, a, b, state_with(numbers, a, b))
            })
        })
    })
}

fn pts(a: BootAttrs) -> (u8, u8, bool) {
    (a.priority(), a.tries(), a.successful())
}

/// The reference's idea of the attributes after booting a slot.
fn reference_after_boot(a: BootAttrs) -> (u8, u8, bool) {
    let (p, t, s) = pts(a);
    match (s, t) {
        (true, _) => (p, t, s),
        (false, 0) => unreachable!("a candidate with S=0 has T>0"),
        (false, 1) => (0, 0, false),
        (false, t) => (p, t - 1, false),
    }
}

#[test]
fn select_matches_reference_on_every_state() {
    let mut checked = 0u64;
    for (numbers, a, b, state) in every_state() {
        let ra = (numbers.0, a.priority(), a.tries(), a.successful());
        let rb = (numbers.1, b.priority(), b.tries(), b.successful());
        let want = reference_choice(ra, rb);
        match (state.select(), want) {
            (Err(Error::NoBootableSlot { a: ea, b: eb }), None) => {
                assert_eq!((ea, eb), (a, b));
                assert!(state.boots_next().is_err());
            }
            (Ok((choice, next)), Some(slot)) => check_one(
                &state,
                &next,
                choice.slot,
                slot,
                choice.trial,
                choice.tries_left,
            ),
            (got, want) => panic!("{a:?} {b:?}: got {got:?}, reference {want:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 2 * 512 * 512);
}

/// After the chosen slot's kernel failed to load, firmware falls back to the other slot exactly
/// as `select` would choose it were the failed slot unbootable, and never touches the failed
/// slot: checked on every state, after the chosen slot's try was consumed.
#[test]
fn select_other_matches_select_without_the_failed_slot_on_every_state() {
    let mut fell_back = 0u64;
    for (_, _, _, state) in every_state() {
        let Ok((first, after_first)) = state.select() else {
            continue;
        };
        let failed = first.slot;
        let without_failed = after_first.with_attrs(failed, after_first.attrs(failed).cleared());
        match (after_first.select_other(failed), without_failed.select()) {
            (Ok((choice, next)), Ok((want, want_next))) => {
                assert_eq!(choice, want, "{state}");
                assert_eq!(choice.slot, !failed);
                assert_eq!(next.attrs(failed), after_first.attrs(failed));
                assert_eq!(next.attrs(!failed), want_next.attrs(!failed));
                check_one(
                    &after_first.with_attrs(failed, BootAttrs::default()),
                    &next.with_attrs(failed, BootAttrs::default()),
                    choice.slot,
                    !failed,
                    choice.trial,
                    choice.tries_left,
                );
                fell_back += 1;
            }
            (Err(Error::NoBootableSlot { .. }), Err(Error::NoBootableSlot { .. })) => {}
            (got, want) => panic!("{state}: got {got:?}, want {want:?}"),
        }
    }
    assert!(fell_back > 100_000, "{fell_back}");
}

fn check_one(
    before: &BootState,
    after: &BootState,
    chosen: Slot,
    want: Slot,
    trial: bool,
    tries_left: u8,
) {
    let old = before.attrs(chosen);
    let new = after.attrs(chosen);
    assert_eq!(chosen, want, "{before}");
    assert_eq!(
        before.boots_next().ok(),
        Some(chosen),
        "boots_next agrees with select"
    );
    // A chosen slot was a candidate.
    assert!(old.is_bootable(), "{before}");
    // The other slot is never touched.
    assert_eq!(after.attrs(!chosen), before.attrs(!chosen));
    // A successful slot is never demoted; a trial consumes exactly one try.
    assert_eq!(trial, !old.successful());
    if old.successful() {
        assert_eq!(new, old);
        assert_eq!(tries_left, 0);
    } else {
        assert_eq!(pts(new), reference_after_boot(old));
        assert_eq!(tries_left, new.tries());
    }
    // Bits outside P/T/S survive.
    assert_eq!(
        new.raw() & !0x01ff_0000_0000_0000,
        old.raw() & !0x01ff_0000_0000_0000
    );
    // The result is a state of the same shape (fields in range by construction).
    assert!(new.priority() <= 15 && new.tries() <= 15);
}

#[test]
fn repeated_trial_boots_fall_back_within_tries() {
    for numbers in [(2u32, 3u32), (5, 4)] {
        for a in all_attrs() {
            for b in all_attrs() {
                let start = state_with(numbers, a, b);
                let Ok((first, _)) = start.select() else {
                    continue;
                };
                if !first.trial {
                    continue;
                }
                let trial_slot = first.slot;
                let tries = start.attrs(trial_slot).tries();
                let mut state = start.clone();
                let mut boots = 0u8;
                let outcome = loop {
                    match state.select() {
                        Ok((c, next)) if c.slot == trial_slot => {
                            boots += 1;
                            assert!(boots <= tries, "{start}: more than {tries} trial boots");
                            state = next;
                        }
                        other => break other,
                    }
                };
                assert!(boots >= 1);
                let other = start.attrs(!trial_slot);
                match outcome {
                    Ok((c, _)) => {
                        assert_eq!(c.slot, !trial_slot, "{start}");
                        assert!(other.is_bootable());
                    }
                    Err(Error::NoBootableSlot { .. }) => assert!(!other.is_bootable(), "{start}"),
                    Err(e) => panic!("{start}: {e}"),
                }
                // The trial slot ends unbootable but keeps its other bits.
                assert!(state.attrs(trial_slot).is_cleared());
            }
        }
    }
}

fn proven_pair() -> BootState {
    state_with(
        (2, 3),
        attrs(PRIORITY_TOP, 0, true),
        attrs(PRIORITY_FALLBACK, 0, true),
    )
}

/// Boots `n` times, returning the slots chosen.
fn boot(state: &mut BootState, n: usize) -> Vec<Slot> {
    (0..n)
        .map(|_| {
            let (choice, next) = state.select().expect("a bootable slot");
            *state = next;
            choice.slot
        })
        .collect()
}

#[test]
fn sequence_install_trial_good() {
    let mut s = proven_pair()
        .clear_for_write(Slot::B)
        .unwrap()
        .arm_for_trial(Slot::B, 2)
        .unwrap();
    assert_eq!(boot(&mut s, 1), [Slot::B]);
    assert!(s.is_on_trial(Slot::B));
    s = s.mark_good(Slot::B).unwrap();
    assert!(!s.is_trial_pending());
    assert_eq!(boot(&mut s, 5), [Slot::B; 5]);
    // The old slot is still the proven fallback.
    assert!(s.attrs(Slot::A).is_proven());
    // And the next update may go to A.
    assert!(s.clear_for_write(Slot::A).is_ok());
}

#[test]
fn sequence_trial_bad_goes_back() {
    let mut s = proven_pair()
        .clear_for_write(Slot::B)
        .unwrap()
        .arm_for_trial(Slot::B, 3)
        .unwrap();
    assert_eq!(boot(&mut s, 1), [Slot::B]);
    s = s.mark_bad(Slot::B).unwrap();
    assert_eq!(boot(&mut s, 3), [Slot::A; 3]);
    assert_eq!(pts(s.attrs(Slot::A)), (PRIORITY_FALLBACK, 0, true));
}

#[test]
fn sequence_tries_exhausted_goes_back() {
    for tries in 1..=BootAttrs::MAX_TRIES {
        let mut s = proven_pair()
            .clear_for_write(Slot::B)
            .unwrap()
            .arm_for_trial(Slot::B, tries)
            .unwrap();
        let mut want = vec![Slot::B; usize::from(tries)];
        want.extend([Slot::A; 2]);
        assert_eq!(boot(&mut s, want.len()), want, "tries {tries}");
        assert!(s.attrs(Slot::B).is_cleared());
        assert!(!s.is_trial_pending());
    }
}

#[test]
fn updater_refusals_are_typed() {
    let armed = proven_pair()
        .clear_for_write(Slot::B)
        .unwrap()
        .arm_for_trial(Slot::B, 1)
        .unwrap();
    assert!(matches!(
        armed.clear_for_write(Slot::B),
        Err(Error::TrialPending { slot: Slot::B, .. })
    ));
    assert!(matches!(
        proven_pair().mark_good(Slot::A),
        Err(Error::NotOnTrial { slot: Slot::A, .. })
    ));
}
