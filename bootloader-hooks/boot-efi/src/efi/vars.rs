//! The volatile `FlipsideSlot` and `FlipsideRefused` variables
//! (flipside_bootloader_hooks::efivar): tell the booted system which slot this boot runs, even
//! when its command line is locked, and which kernel image the firmware refused.

use flipside_bootloader_hooks::efivar;
use flipside_bootloader_hooks::Slot;
use uefi::runtime::{self, VariableAttributes, VariableVendor};
use uefi::{CString16, Guid, Status};

/// Sets `FlipsideSlot` to `slot` (boot-service and runtime access, not non-volatile).
pub fn set_slot(slot: Slot) -> Result<(), Status> {
    set(efivar::SLOT_VARIABLE, &efivar::encode_slot(slot))
}

/// Sets `FlipsideRefused`: the firmware refused `slot`'s kernel image with `status`.
pub fn set_refused(slot: Slot, status: &str) -> Result<(), Status> {
    set(
        efivar::REFUSED_VARIABLE,
        &efivar::encode_refusal(slot, status),
    )
}

/// Sets one of flipside's volatile variables (boot-service and runtime access).
fn set(name: &str, value: &[u8]) -> Result<(), Status> {
    let name = CString16::try_from(name).map_err(|_| Status::INVALID_PARAMETER)?;
    // A GUID is stored with its first three fields little-endian: the uuid's "le" bytes.
    let vendor = VariableVendor(Guid::from_bytes(efivar::VENDOR_GUID.to_bytes_le()));
    let attributes = VariableAttributes::from_bits_retain(efivar::SLOT_VARIABLE_ATTRIBUTES);
    runtime::set_variable(&name, &vendor, attributes, value).map_err(|e| e.status())
}
