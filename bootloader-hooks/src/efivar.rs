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
    fn names_the_efivarfs_file() {
        assert_eq!(
            slot_variable_file_name(),
            "FlipsideSlot-04bfef25-d88a-4d8f-bb49-90caf86c6315"
        );
    }
}
