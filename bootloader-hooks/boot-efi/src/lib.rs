//! flipside-boot, a UEFI boot manager for flipside's A/B slots.
//!
//! - [`flow`]: the decisions (which slot, record the try, read and trim the kernel image,
//!   fall back once), over a [`flow::Firmware`] trait and any `BlockDevice`; pure enough to be
//!   unit-tested on the host.
//! - `efi` (only when built for a UEFI target): the firmware side in small modules: the block
//!   I/O adapter over the whole disk the ESP lives on, the `FlipsideSlot` variable, the
//!   console, and `LoadImage`/`StartImage`.
//!
//! The rules and the GPT codec are flipside-bootloader-hooks' `no_std` core, the same code
//! that flipside-select runs from an initramfs.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(target_os = "uefi")]
pub mod efi;
pub mod flow;
