//! How the firmware stage tells the booted system which slot it chose: a volatile EFI variable
//! of flipside's own vendor GUID (the model is systemd's boot loader interface,
//! `LoaderEntrySelected`). It survives a locked kernel command line (Secure Boot with a UKI), so
//! the running system reads it first and `flipside.slot=` on the command line second.
//!
//! Through efivarfs the variable is the file
//! `/sys/firmware/efi/efivars/FlipsideSlot-04bfef25-d88a-4d8f-bb49-90caf86c6315`, holding the
//! 4-byte attribute word followed by the value: `a` or `b` as UTF-16LE with a terminating NUL.

use alloc::vec::Vec;

use uuid::Uuid;

use crate::slot::Slot;

/// flipside's vendor GUID for its EFI variables.
pub const VENDOR_GUID: Uuid = Uuid::from_u128(0x04bfef25_d88a_4d8f_bb49_90caf86c6315);

/// Name of the variable holding the slot flipside-boot chose for this boot.
pub const SLOT_VARIABLE: &str = "FlipsideSlot";

/// EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS, and not NON_VOLATILE: the
/// value lives for one boot only, so a stale choice can never describe a later boot.
pub const SLOT_VARIABLE_ATTRIBUTES: u32 = 0x2 | 0x4;

/// The variable's value for `slot`: the slot name as UTF-16LE with a terminating NUL.
pub fn encode_slot(slot: Slot) -> Vec<u8> {
    slot.name()
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Reads a slot back from the variable's value, with or without the efivarfs attribute word in
/// front and with or without the terminating NUL. Anything else is `None`: never a guess.
pub fn decode_slot(bytes: &[u8]) -> Option<Slot> {
    let value = match bytes.len() {
        // Attribute word + "x\0" or "x".
        8 | 6 => &bytes[4..],
        4 | 2 => bytes,
        _ => return None,
    };
    let unit = u16::from_le_bytes([value[0], value[1]]);
    if value.len() == 4 && value[2..] != [0, 0] {
        return None;
    }
    match char::from_u32(u32::from(unit))? {
        'a' => Some(Slot::A),
        'b' => Some(Slot::B),
        _ => None,
    }
}

/// The efivarfs file name of the slot variable.
pub fn slot_variable_file_name() -> alloc::string::String {
    alloc::format!("{SLOT_VARIABLE}-{}", VENDOR_GUID.hyphenated())
}

/// Name of the variable in which flipside-boot records a kernel image the firmware refused
/// to load this boot (Secure Boot: not signed by a key in `db`), so that the booted system can
/// say why it runs the other slot. Volatile like [`SLOT_VARIABLE`], with the same attributes.
pub const REFUSED_VARIABLE: &str = "FlipsideRefused";

/// A kernel image the firmware refused: the slot and the firmware's status
/// (`SECURITY_VIOLATION`, `ACCESS_DENIED`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub slot: Slot,
    pub status: alloc::string::String,
}

/// Longest firmware status name kept in [`REFUSED_VARIABLE`].
pub const REFUSAL_STATUS_MAX: usize = 64;

/// The value of [`REFUSED_VARIABLE`]: ASCII `slot=<a|b> status=<STATUS>`, readable with `cat`.
/// A status is cut to [`REFUSAL_STATUS_MAX`] characters of `[A-Z0-9_]`; others become `_`.
pub fn encode_refusal(slot: Slot, status: &str) -> Vec<u8> {
    let status: alloc::string::String = status
        .chars()
        .take(REFUSAL_STATUS_MAX)
        .map(|c| match c {
            'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    alloc::format!("slot={} status={status}", slot.name()).into_bytes()
}

/// Reads [`REFUSED_VARIABLE`] back, with or without the efivarfs attribute word in front.
/// Anything that is not exactly what [`encode_refusal`] writes is `None`.
pub fn decode_refusal(bytes: &[u8]) -> Option<Refusal> {
    let text = match bytes.strip_prefix(&SLOT_VARIABLE_ATTRIBUTES.to_le_bytes()) {
        Some(rest) => rest,
        None => bytes,
    };
    let text = core::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix("slot=")?;
    let (slot, status) = rest.split_once(" status=")?;
    let slot = match slot {
        "a" => Slot::A,
        "b" => Slot::B,
        _ => return None,
    };
    let valid = !status.is_empty()
        && status.len() <= REFUSAL_STATUS_MAX
        && status
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    valid.then(|| Refusal {
        slot,
        status: status.into(),
    })
}

/// The efivarfs file name of the refusal variable.
pub fn refused_variable_file_name() -> alloc::string::String {
    alloc::format!("{REFUSED_VARIABLE}-{}", VENDOR_GUID.hyphenated())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_the_attribute_word() {
        for slot in Slot::ALL {
            let value = encode_slot(slot);
            assert_eq!(value.len(), 4);
            assert_eq!(decode_slot(&value), Some(slot));
            let mut file = SLOT_VARIABLE_ATTRIBUTES.to_le_bytes().to_vec();
            file.extend_from_slice(&value);
            assert_eq!(decode_slot(&file), Some(slot));
            assert_eq!(decode_slot(&file[..6]), Some(slot), "without the NUL");
        }
        assert_eq!(encode_slot(Slot::B), [b'b', 0, 0, 0]);
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            &b""[..],
            b"a",
            b"c\0\0\0",
            b"A\0\0\0",
            b"a\0b\0",
            b"\x06\0\0\0a\0b\0",
            b"\x06\0\0\0a\0\0\0\0\0",
            b"ab",
        ] {
            assert_eq!(decode_slot(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refusals_round_trip_and_nothing_else_parses() {
        let value = encode_refusal(Slot::B, "SECURITY_VIOLATION");
        assert_eq!(value, b"slot=b status=SECURITY_VIOLATION");
        let want = Refusal {
            slot: Slot::B,
            status: "SECURITY_VIOLATION".into(),
        };
        assert_eq!(decode_refusal(&value), Some(want.clone()));
        let mut file = SLOT_VARIABLE_ATTRIBUTES.to_le_bytes().to_vec();
        file.extend_from_slice(&value);
        assert_eq!(decode_refusal(&file), Some(want));
        assert_eq!(
            encode_refusal(Slot::A, "Access denied!"),
            b"slot=a status=A_____________"
        );
        for bad in [
            &b""[..],
            b"slot=c status=X",
            b"slot=a status=",
            b"slot=a status=lower",
            b"slot=a",
            b"slot=a status=X\n",
        ] {
            assert_eq!(decode_refusal(bad), None, "{bad:?}");
        }
        assert_eq!(
            refused_variable_file_name(),
            "FlipsideRefused-04bfef25-d88a-4d8f-bb49-90caf86c6315"
        );
    }

    #[test]
    fn names_the_efivarfs_file() {
        assert_eq!(
            slot_variable_file_name(),
            "FlipsideSlot-04bfef25-d88a-4d8f-bb49-90caf86c6315"
        );
    }
}
