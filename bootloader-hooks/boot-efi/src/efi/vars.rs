//! The volatile `FlipsideSlot` variable (flipside_bootloader_hooks::efivar): tells the booted
//! system which slot this boot runs, even when its command line is locked.

use flipside_bootloader_hooks::efivar;
use flipside_bootloader_hooks::Slot;
use uefi::runtime::{self, VariableAttributes, VariableVendor};
use uefi::{CString16, Guid, Status};

/// Sets `FlipsideSlot` to `slot` (boot-service and runtime access, not non-volatile).
pub fn set_slot(slot: Slot) -> Result<(), Status> {
    let name = CString16::try_from(efivar::SLOT_VARIABLE).map_err(|_| Status::INVALID_PARAMETER)?;
    // A GUID is stored with its first three fields little-endian: the uuid's "le" bytes.
    let vendor = VariableVendor(Guid::from_bytes(efivar::VENDOR_GUID.to_bytes_le()));
    let attributes = VariableAttributes::from_bits_retain(efivar::SLOT_VARIABLE_ATTRIBUTES);
    runtime::set_variable(&name, &vendor, attributes, &efivar::encode_slot(slot))
        .map_err(|e| e.status())
}
