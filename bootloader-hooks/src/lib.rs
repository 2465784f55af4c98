//! A/B boot state in GPT attribute bits, in the layout ChromeOS and Bottlerocket use (priority
//! bits 48-51, tries 52-55, successful 56), and a GPT codec that rewrites it safely.
//!
//! Pure core, I/O at the edge:
//! - [`BootAttrs`], [`Slot`] and [`BootState`] hold state and its transitions (firmware's
//!   [`BootState::select`], the updater's `clear_for_write` / `arm_for_trial` / `mark_good` /
//!   `mark_bad` / `rollback`); none of them touches a disk.
//! - [`gpt`] reads and checks both table copies and writes them back in a power-cut-safe order;
//!   [`disk`] maps slots to partitions and is the one place that commits a state.
//! - The `flipside-select` binary runs [`BootState::select`] from an initramfs; the UEFI boot
//!   manager `flipside-boot` runs the same rules in firmware.
//!
//! Without the default `std` feature the crate is `no_std` + `alloc`: everything but
//! [`std_device`], [`devpath`] and `flipside-select` compiles for `x86_64-unknown-uefi`, so the
//! firmware stage and the initramfs share one implementation of the rules and the GPT codec.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod attrs;
pub mod device;
#[cfg(feature = "std")]
pub mod devpath;
pub mod disk;
pub mod efivar;
pub mod error;
pub mod gpt;
pub mod pe;
pub mod slot;
pub mod state;
#[cfg(feature = "std")]
pub mod std_device;

pub use attrs::BootAttrs;
pub use device::{BlockDevice, DeviceError, Disk};
pub use disk::{commit, load, SlotLayout};
pub use error::{Error, Result};
pub use gpt::{
    CopyKind, CopyProblem, GptTable, LayoutProblem, PartitionEntry, PartitionSelector, TableHealth,
};
pub use slot::Slot;
pub use state::{BootState, Selection, SlotPartition, SlotState, PRIORITY_FALLBACK, PRIORITY_TOP};
#[cfg(feature = "std")]
pub use std_device::{CutMode, PowerCut};
