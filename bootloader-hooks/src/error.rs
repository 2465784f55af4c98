//! The crate's one error type: a variant per failure class, each with the slot, disk or value it
//! concerns and a message that says what to do next.

use alloc::string::String;
use alloc::vec::Vec;

use crate::attrs::BootAttrs;
use crate::device::DeviceError;
use crate::gpt::{CopyProblem, LayoutProblem};
use crate::slot::Slot;

/// Everything that can go wrong in boot-state handling and in reading or writing the GPT.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A priority or tries value does not fit its 4-bit field (or is otherwise out of range).
    #[error("{field} value {value} is out of range {min}..={max}: pass a value inside the range")]
    FieldOutOfRange {
        field: &'static str,
        value: u8,
        min: u8,
        max: u8,
    },

    /// Neither slot is a candidate (P>0 and (S=1 or T>0)).
    #[error(
        "no bootable slot: slot a has {a}, slot b has {b}; \
         reinstall a slot or set a proven slot's priority (cgpt add -P)"
    )]
    NoBootableSlot { a: BootAttrs, b: BootAttrs },

    /// An update was requested while a slot still waits for its trial boot to be judged.
    #[error(
        "slot {slot} has a trial pending ({attrs}): \
         reboot into it and mark it good or bad before starting another update"
    )]
    TrialPending { slot: Slot, attrs: BootAttrs },

    /// The transition would leave no proven slot to fall back to.
    #[error(
        "cannot change slot {slot}: the other slot {other} is not a bootable fallback ({other_attrs}); \
         mark the running slot good first"
    )]
    NoFallback {
        slot: Slot,
        other: Slot,
        other_attrs: BootAttrs,
    },

    /// A slot was armed without being cleared before its image was written.
    #[error(
        "slot {slot} was not cleared before writing ({attrs}): \
         clear it for writing, rewrite the image, then arm it"
    )]
    SlotNotCleared { slot: Slot, attrs: BootAttrs },

    /// `mark_good` on a slot that is not on trial.
    #[error("slot {slot} is not on trial ({attrs}): there is nothing to mark good")]
    NotOnTrial { slot: Slot, attrs: BootAttrs },

    /// `rollback` found the other slot unbootable.
    #[error(
        "cannot roll back to slot {slot}: it is not bootable ({attrs}); install an image into it first"
    )]
    RollbackTargetNotBootable { slot: Slot, attrs: BootAttrs },

    /// Both slots name the same partition.
    #[error("slots a and b both name partition {index}: give the two slots distinct partitions")]
    SamePartition { index: u32 },

    /// The disk or image could not be opened.
    #[cfg(feature = "std")]
    #[error("cannot open {path}: {source}; check the path and that you may read (and write) it")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    /// Reading from the disk failed.
    #[error("cannot read {len} bytes at offset {offset} of {disk}: {source}")]
    Read {
        disk: String,
        offset: u64,
        len: usize,
        source: DeviceError,
    },

    /// Writing to the disk failed; the table may be half written (the other copy is intact).
    #[error(
        "cannot write {len} bytes at offset {offset} of {disk}: {source}; \
         the other GPT copy is intact, run the operation again"
    )]
    Write {
        disk: String,
        offset: u64,
        len: usize,
        source: DeviceError,
    },

    /// Flushing the disk failed; what was written may not be durable.
    #[error(
        "cannot flush {disk}: {source}; the table may not be durable, run the operation again"
    )]
    Sync { disk: String, source: DeviceError },

    /// The disk is too small to hold a GPT.
    #[error(
        "{disk} is {len} bytes, too small for a GPT: is this the whole disk, not a partition?"
    )]
    DiskTooSmall { disk: String, len: u64 },

    /// Sector 0 holds no protective MBR.
    #[error(
        "{disk} has no protective MBR in sector 0 (no 0x55AA signature or no 0xEE partition): \
         is this a GPT disk?"
    )]
    NoProtectiveMbr { disk: String },

    /// Neither GPT copy is valid.
    #[error(
        "{disk} has no valid GPT: primary: {primary}; backup: {backup}; \
         the table cannot be trusted, recreate it from the image"
    )]
    BothCopiesCorrupt {
        disk: String,
        primary: CopyProblem,
        backup: CopyProblem,
    },

    /// The partition entries contradict each other or the header: a slot's bytes cannot be
    /// located safely.
    #[error(
        "{disk}: the partition table cannot be trusted: {problem}; \
         nothing was written; repair the table (sgdisk -p {disk} shows it) and try again"
    )]
    BadLayout {
        disk: String,
        problem: LayoutProblem,
    },

    /// The valid GPT copy cannot be written back without clobbering partition data.
    #[error(
        "{disk}: the GPT geometry leaves no room for the {copy} entry array at LBA {lba}: \
         repair the table with sgdisk -e or cgpt repair"
    )]
    BadGeometry {
        disk: String,
        copy: &'static str,
        lba: u64,
    },

    /// The table read back after a write is not the one written.
    #[error(
        "{disk}: the GPT read back after writing differs from what was written: \
         the device may be failing; check it before the next boot"
    )]
    WriteNotVerified { disk: String },

    /// No partition matches a slot's label or PARTUUID.
    #[error("{disk} has no partition {selector}: check the slot labels (sgdisk -p {disk})")]
    PartitionNotFound { disk: String, selector: String },

    /// More than one partition matches a slot's label or PARTUUID.
    #[error(
        "{disk} has several partitions {selector} (numbers {indices:?}): give the slots unique labels"
    )]
    AmbiguousPartition {
        disk: String,
        selector: String,
        indices: Vec<u32>,
    },

    /// An attribute update names a partition entry the table does not have.
    #[error("{disk} has no partition entry {index}: the table changed under us, read it again")]
    NoSuchEntry { disk: String, index: u32 },
}

/// The crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
