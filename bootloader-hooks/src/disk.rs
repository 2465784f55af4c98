//! The edge between boot state and a disk: find the two slot partitions in a GPT, read their
//! attributes into a [`BootState`], and put a changed state back. [`commit`] is the only
//! function here that writes.
//!
//! The partition device (`/dev/vda3`) and the whole-disk device (`/dev/vda`) have separate page
//! caches: whoever writes an image through the partition device must fsync it before the table
//! is changed through the whole disk.

use alloc::format;
use alloc::string::{String, ToString};

use crate::device::{BlockDevice, Disk};
use crate::error::{Error, Result};
use crate::gpt::{check_layout, GptTable, PartitionEntry, PartitionSelector};
use crate::slot::Slot;
use crate::state::{BootState, SlotPartition, SlotState};

/// Default GPT partition name of slot A.
pub const DEFAULT_LABEL_A: &str = "root-a";
/// Default GPT partition name of slot B.
pub const DEFAULT_LABEL_B: &str = "root-b";

/// How the two slots are found in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    pub a: PartitionSelector,
    pub b: PartitionSelector,
}

impl SlotLayout {
    /// Slots found by GPT partition name.
    pub fn by_labels(a: impl Into<String>, b: impl Into<String>) -> Self {
        Self {
            a: PartitionSelector::Label(a.into()),
            b: PartitionSelector::Label(b.into()),
        }
    }

    /// The selector for one slot.
    pub fn selector(&self, slot: Slot) -> &PartitionSelector {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

impl Default for SlotLayout {
    /// Partitions named `root-a` and `root-b`.
    fn default() -> Self {
        Self::by_labels(DEFAULT_LABEL_A, DEFAULT_LABEL_B)
    }
}

fn slot_state(entry: PartitionEntry) -> SlotState {
    SlotState {
        attrs: entry.attrs,
        partition: SlotPartition {
            number: entry.number,
            partuuid: entry.partuuid,
            label: entry.label,
        },
    }
}

/// The boot state of the slots `layout` names in `table`, once every used entry has passed
/// [`check_layout`]. Pure: no I/O.
pub fn boot_state(table: &GptTable, layout: &SlotLayout) -> Result<BootState> {
    let header = table.header();
    check_layout(
        &table.partitions(),
        header.first_usable_lba,
        header.last_usable_lba,
    )
    .map_err(|problem| Error::BadLayout {
        disk: table.disk().to_string(),
        problem,
    })?;
    let a = table.find(&layout.a)?;
    let b = table.find(&layout.b)?;
    BootState::new(slot_state(a), slot_state(b))
}

/// Puts both slots' attributes of `state` into `table`, in memory. The partitions must still
/// be where `state` found them.
pub fn apply(table: &mut GptTable, state: &BootState) -> Result<()> {
    for slot in Slot::ALL {
        let s = state.slot(slot);
        let here = table.partition(s.partition.number);
        if here.is_none_or(|e| e.partuuid != s.partition.partuuid) {
            return Err(Error::PartitionNotFound {
                disk: table_name(table),
                selector: format!(
                    "number {} with PARTUUID {}",
                    s.partition.number,
                    s.partition.partuuid.hyphenated()
                ),
            });
        }
        table.set_attrs(s.partition.number, s.attrs)?;
    }
    Ok(())
}

fn table_name(table: &GptTable) -> String {
    table.disk().to_string()
}

/// Reads the table on `disk` and the boot state of the slots `layout` names.
pub fn load<D: BlockDevice>(
    disk: &mut Disk<D>,
    layout: &SlotLayout,
) -> Result<(GptTable, BootState)> {
    let table = GptTable::read(disk)?;
    let state = boot_state(&table, layout)?;
    Ok((table, state))
}

/// Writes `state` into the table on `disk` when it differs from what is there or when a table
/// copy needs repair (see [`GptTable::write`] for the order). Returns whether it wrote.
pub fn commit<D: BlockDevice>(
    disk: &mut Disk<D>,
    table: &mut GptTable,
    state: &BootState,
) -> Result<bool> {
    apply(table, state)?;
    if !table.is_modified() && !table.needs_repair() {
        return Ok(false);
    }
    table.write(disk)?;
    Ok(true)
}
