//! The 64-bit GPT attribute field as boot state: priority (bits 48-51), tries (52-55) and
//! successful (56), in the layout ChromeOS and Bottlerocket use. Every other bit (the UEFI bits
//! 0-2, ChromeOS' error counter, systemd's GrowFS/ReadOnly/NoAuto) is carried through untouched.

use core::fmt;

use crate::error::{Error, Result};

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_SHIFT: u32 = 56;
const NIBBLE: u64 = 0xf;

/// The attribute field of one GPT partition entry, read as A/B boot state.
///
/// Setters are checked and return a new value; nothing outside the three fields changes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BootAttrs(u64);

impl BootAttrs {
    /// Largest priority the 4-bit field holds.
    pub const MAX_PRIORITY: u8 = 15;
    /// Largest tries count the 4-bit field holds.
    pub const MAX_TRIES: u8 = 15;

    /// Wraps a raw attribute field as stored in the entry (bytes 48..56, little endian).
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit field, all bits included.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Boot state with every other bit zero, like a fresh `cgpt add -P -T -S`.
    pub fn new(priority: u8, tries: u8, successful: bool) -> Result<Self> {
        Self::default()
            .with_priority(priority)?
            .with_tries(tries)
            .map(|a| a.with_successful(successful))
    }

    /// Priority P (0 = never boot, higher wins).
    pub const fn priority(self) -> u8 {
        ((self.0 >> PRIORITY_SHIFT) & NIBBLE) as u8
    }

    /// Tries T: trial boots left while the slot is not yet successful.
    pub const fn tries(self) -> u8 {
        ((self.0 >> TRIES_SHIFT) & NIBBLE) as u8
    }

    /// Successful S: the slot has proven itself and is never demoted by the selector.
    pub const fn successful(self) -> bool {
        (self.0 >> SUCCESSFUL_SHIFT) & 1 == 1
    }

    /// The same field with priority `p`; `p` must fit 4 bits.
    pub fn with_priority(self, p: u8) -> Result<Self> {
        let p = check("priority", p, Self::MAX_PRIORITY)?;
        Ok(Self(set_nibble(self.0, PRIORITY_SHIFT, p)))
    }

    /// The same field with tries `t`; `t` must fit 4 bits.
    pub fn with_tries(self, t: u8) -> Result<Self> {
        let t = check("tries", t, Self::MAX_TRIES)?;
        Ok(Self(set_nibble(self.0, TRIES_SHIFT, t)))
    }

    /// The same field with the successful bit set or cleared.
    pub const fn with_successful(self, s: bool) -> Self {
        let bit = 1u64 << SUCCESSFUL_SHIFT;
        Self(if s { self.0 | bit } else { self.0 & !bit })
    }

    /// P=0, T=0, S=0, other bits kept: the state of a slot that must not boot.
    pub const fn cleared(self) -> Self {
        let mask = (NIBBLE << PRIORITY_SHIFT) | (NIBBLE << TRIES_SHIFT) | (1 << SUCCESSFUL_SHIFT);
        Self(self.0 & !mask)
    }

    /// Whether P, T and S are all zero.
    pub const fn is_cleared(self) -> bool {
        self.priority() == 0 && self.tries() == 0 && !self.successful()
    }

    /// Whether firmware would consider the slot: P>0 and (S=1 or T>0).
    pub const fn is_bootable(self) -> bool {
        self.priority() > 0 && (self.successful() || self.tries() > 0)
    }

    /// Whether the slot is a proven fallback: bootable and S=1.
    pub const fn is_proven(self) -> bool {
        self.priority() > 0 && self.successful()
    }

    /// Whether the slot is armed for a trial boot that has not been judged: P>0, T>0, S=0.
    pub const fn is_trial_armed(self) -> bool {
        self.priority() > 0 && self.tries() > 0 && !self.successful()
    }
}

fn check(field: &'static str, value: u8, max: u8) -> Result<u64> {
    if value > max {
        return Err(Error::FieldOutOfRange {
            field,
            value,
            min: 0,
            max,
        });
    }
    Ok(u64::from(value))
}

fn set_nibble(raw: u64, shift: u32, value: u64) -> u64 {
    (raw & !(NIBBLE << shift)) | (value << shift)
}

impl fmt::Display for BootAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "P={} T={} S={}",
            self.priority(),
            self.tries(),
            u8::from(self.successful())
        )
    }
}

impl fmt::Debug for BootAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootAttrs({self} raw={:#018x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_literals_match_cgpt_layout() {
        // `cgpt add -P 2 -T 1 -S 0` on a zeroed field.
        assert_eq!(
            BootAttrs::new(2, 1, false).unwrap().raw(),
            0x0012_0000_0000_0000
        );
        // `cgpt add -P 15 -T 15 -S 1`.
        assert_eq!(
            BootAttrs::new(15, 15, true).unwrap().raw(),
            0x01ff_0000_0000_0000
        );
        // `cgpt add -P 1 -T 0 -S 1`.
        assert_eq!(
            BootAttrs::new(1, 0, true).unwrap().raw(),
            0x0101_0000_0000_0000
        );

        let a = BootAttrs::from_raw(0x0135_0000_0000_0000);
        assert_eq!((a.priority(), a.tries(), a.successful()), (5, 3, true));
    }

    #[test]
    fn other_bits_survive_every_setter() {
        // UEFI required + legacy bootable, ChromeOS error counter, systemd GrowFS/RO/NoAuto.
        let others = 0x9a00_0000_0000_0005u64 | (1 << 57);
        let a = BootAttrs::from_raw(others)
            .with_priority(7)
            .unwrap()
            .with_tries(9)
            .unwrap()
            .with_successful(true);
        assert_eq!(a.raw() & !0x01ff_0000_0000_0000, others);
        assert_eq!(a.cleared().raw(), others);
        assert!(a.cleared().is_cleared());
    }

    #[test]
    fn setters_refuse_values_wider_than_four_bits() {
        for bad in 16..=u8::MAX {
            assert!(matches!(
                BootAttrs::default().with_priority(bad),
                Err(Error::FieldOutOfRange { field: "priority", value, .. }) if value == bad
            ));
            assert!(matches!(
                BootAttrs::default().with_tries(bad),
                Err(Error::FieldOutOfRange { field: "tries", .. })
            ));
        }
    }

    #[test]
    fn round_trip_every_field_value() {
        for p in 0..=15 {
            for t in 0..=15 {
                for s in [false, true] {
                    let a = BootAttrs::from_raw(u64::MAX).cleared();
                    let a = a.with_priority(p).unwrap().with_tries(t).unwrap();
                    let a = a.with_successful(s);
                    assert_eq!((a.priority(), a.tries(), a.successful()), (p, t, s));
                    assert_eq!(a.is_bootable(), p > 0 && (s || t > 0));
                }
            }
        }
    }

    #[test]
    fn display_names_the_fields() {
        let a = BootAttrs::new(2, 1, false).unwrap();
        assert_eq!(a.to_string(), "P=2 T=1 S=0");
        assert_eq!(
            format!("{a:?}"),
            "BootAttrs(P=2 T=1 S=0 raw=0x0012000000000000)"
        );
    }
}
