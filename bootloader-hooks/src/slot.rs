//! The two boot slots. Code names a slot by what it is (`Slot::A`), never by its role, and gets
//! the other one with `!slot`.

use core::fmt;
use core::ops::Not;

/// One of the two A/B slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// Lower-case name as printed for shells and logs: `a` or `b`.
    pub const fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl Not for Slot {
    type Output = Slot;

    fn not(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_gives_the_other_slot() {
        assert_eq!(!Slot::A, Slot::B);
        assert_eq!(!Slot::B, Slot::A);
        for s in Slot::ALL {
            assert_eq!(!!s, s);
        }
        assert_eq!(Slot::B.to_string(), "b");
    }
}
