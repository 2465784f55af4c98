//! GPT partition entries (UEFI 2.10 section 5.3.3): type and unique GUID, LBA range, the
//! attribute field at offset 48, and the UTF-16LE name at offset 56.

use core::fmt;

use alloc::string::String;
use alloc::vec::Vec;

use uuid::Uuid;

use super::header::{guid_at, u64_at};
use crate::attrs::BootAttrs;

/// Byte offset of the attribute field inside an entry.
pub const ATTRS_OFFSET: usize = 48;
const NAME_OFFSET: usize = 56;
const NAME_BYTES: usize = 72;

/// One used partition entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Partition number, 1-based (as in `/dev/vda3` and `cgpt -i`).
    pub number: u32,
    pub type_guid: Uuid,
    /// The unique partition GUID, the PARTUUID the kernel command line names.
    pub partuuid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attrs: BootAttrs,
    /// The GPT partition name (what `sgdisk -c` sets and `cgpt -l` shows).
    pub label: String,
}

impl PartitionEntry {
    /// Decodes entry `number` (1-based) from its `bytes`; `None` for an unused entry (zero type).
    pub fn parse(number: u32, bytes: &[u8]) -> Option<Self> {
        let type_guid = guid_at(bytes, 0);
        if type_guid.is_nil() {
            return None;
        }
        let name = &bytes[NAME_OFFSET..NAME_OFFSET + NAME_BYTES];
        let units: Vec<u16> = name
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(Self {
            number,
            type_guid,
            partuuid: guid_at(bytes, 16),
            first_lba: u64_at(bytes, 32),
            last_lba: u64_at(bytes, 40),
            attrs: BootAttrs::from_raw(u64_at(bytes, ATTRS_OFFSET)),
            label: String::from_utf16_lossy(&units),
        })
    }
}

impl PartitionEntry {
    /// The bytes the partition occupies on a disk with `sector_size`-byte sectors; `None` when
    /// the entry is inverted (first LBA after last) or the range overflows.
    pub fn byte_range(&self, sector_size: u64) -> Option<core::ops::Range<u64>> {
        if self.first_lba > self.last_lba {
            return None;
        }
        let start = self.first_lba.checked_mul(sector_size)?;
        let end = self.last_lba.checked_add(1)?.checked_mul(sector_size)?;
        Some(start..end)
    }
}

/// Why the used entries of a table cannot be trusted to say where a slot's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutProblem {
    #[error("partition {number} ends (LBA {last}) before it starts (LBA {first})")]
    Inverted { number: u32, first: u64, last: u64 },
    #[error(
        "partition {number} (LBA {first}..={last}) lies outside the usable area \
         {usable_first}..={usable_last}"
    )]
    OutsideUsable {
        number: u32,
        first: u64,
        last: u64,
        usable_first: u64,
        usable_last: u64,
    },
    #[error("partitions {a} and {b} overlap")]
    Overlap { a: u32, b: u32 },
}

/// Checks every used entry: first LBA <= last LBA, inside the usable area, and no two
/// partitions sharing a sector. Writing a slot trusts these ranges, so a table that breaks them
/// is refused whole (an overlapping "inactive" slot could be the running one). Pure.
pub fn check_layout(
    entries: &[PartitionEntry],
    usable_first: u64,
    usable_last: u64,
) -> Result<(), LayoutProblem> {
    for e in entries {
        if e.first_lba > e.last_lba {
            return Err(LayoutProblem::Inverted {
                number: e.number,
                first: e.first_lba,
                last: e.last_lba,
            });
        }
        if e.first_lba < usable_first || e.last_lba > usable_last {
            return Err(LayoutProblem::OutsideUsable {
                number: e.number,
                first: e.first_lba,
                last: e.last_lba,
                usable_first,
                usable_last,
            });
        }
    }
    let mut by_start: Vec<&PartitionEntry> = entries.iter().collect();
    by_start.sort_by_key(|e| (e.first_lba, e.number));
    for pair in by_start.windows(2) {
        // Sorted by start and each non-inverted: only neighbours can be the first overlap.
        if pair[1].first_lba <= pair[0].last_lba {
            let (a, b) = (
                pair[0].number.min(pair[1].number),
                pair[0].number.max(pair[1].number),
            );
            return Err(LayoutProblem::Overlap { a, b });
        }
    }
    Ok(())
}

/// How a slot's partition is found in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionSelector {
    /// By GPT partition name.
    Label(String),
    /// By unique partition GUID.
    PartUuid(Uuid),
}

impl PartitionSelector {
    /// Whether `entry` is the partition this selector names.
    pub fn matches(&self, entry: &PartitionEntry) -> bool {
        match self {
            PartitionSelector::Label(l) => entry.label == *l,
            PartitionSelector::PartUuid(u) => entry.partuuid == *u,
        }
    }
}

impl fmt::Display for PartitionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionSelector::Label(l) => write!(f, "labelled {l:?}"),
            PartitionSelector::PartUuid(u) => write!(f, "with PARTUUID {}", u.hyphenated()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields_and_utf16_name() {
        let mut e = vec![0u8; 128];
        let ty = Uuid::parse_str("fe3a2a5d-4f32-41a7-b725-accc3285a309").unwrap();
        let id = Uuid::parse_str("0b6e0d2c-7a4f-4b43-9d37-2a4b1c5d6e7f").unwrap();
        e[..16].copy_from_slice(&ty.to_bytes_le());
        e[16..32].copy_from_slice(&id.to_bytes_le());
        e[32..40].copy_from_slice(&2048u64.to_le_bytes());
        e[40..48].copy_from_slice(&4095u64.to_le_bytes());
        e[48..56].copy_from_slice(&0x0012_0000_0000_0000u64.to_le_bytes());
        for (i, u) in "root-ä".encode_utf16().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        let p = PartitionEntry::parse(3, &e).unwrap();
        assert_eq!((p.number, p.type_guid, p.partuuid), (3, ty, id));
        assert_eq!((p.first_lba, p.last_lba), (2048, 4095));
        assert_eq!((p.attrs.priority(), p.attrs.tries()), (2, 1));
        assert_eq!(p.label, "root-ä");
        assert!(PartitionSelector::Label("root-ä".into()).matches(&p));
        assert!(PartitionSelector::PartUuid(id).matches(&p));
        assert!(!PartitionSelector::Label("root".into()).matches(&p));
        assert!(PartitionEntry::parse(1, &[0u8; 128]).is_none());
    }

    fn part(number: u32, first: u64, last: u64) -> PartitionEntry {
        PartitionEntry {
            number,
            type_guid: Uuid::from_u128(1),
            partuuid: Uuid::from_u128(u128::from(number)),
            first_lba: first,
            last_lba: last,
            attrs: BootAttrs::default(),
            label: String::new(),
        }
    }

    #[test]
    fn byte_ranges_are_checked() {
        assert_eq!(
            part(1, 2048, 4095).byte_range(512),
            Some(2048 * 512..4096 * 512)
        );
        assert_eq!(part(1, 10, 10).byte_range(4096), Some(40960..45056));
        assert_eq!(part(1, 10, 8).byte_range(512), None, "inverted");
        assert_eq!(
            part(1, 0, u64::MAX).byte_range(512),
            None,
            "last + 1 overflows"
        );
        assert_eq!(
            part(1, 0, u64::MAX / 256).byte_range(512),
            None,
            "end overflows"
        );
    }

    #[test]
    fn layout_checks_every_entry_and_every_pair() {
        let ok = [part(1, 34, 99), part(2, 100, 199), part(3, 300, 400)];
        assert_eq!(check_layout(&ok, 34, 400), Ok(()));
        assert_eq!(check_layout(&[], 34, 400), Ok(()));
        // Table order does not matter.
        let shuffled = [ok[2].clone(), ok[0].clone(), ok[1].clone()];
        assert_eq!(check_layout(&shuffled, 34, 400), Ok(()));
        assert_eq!(
            check_layout(&[part(1, 34, 99), part(2, 100, 98)], 34, 400),
            Err(LayoutProblem::Inverted {
                number: 2,
                first: 100,
                last: 98
            })
        );
        for (first, last) in [(33, 99), (34, 401), (500, 600)] {
            assert!(matches!(
                check_layout(&[part(4, first, last)], 34, 400),
                Err(LayoutProblem::OutsideUsable { number: 4, .. })
            ));
        }
        // Overlaps: one sector shared, one inside another, the same range twice, in any order.
        for (a, b) in [
            ((34, 100), (100, 199)),
            ((34, 399), (200, 210)),
            ((50, 60), (50, 60)),
        ] {
            for (x, y) in [(a, b), (b, a)] {
                let entries = [part(3, x.0, x.1), part(7, y.0, y.1)];
                assert_eq!(
                    check_layout(&entries, 34, 400),
                    Err(LayoutProblem::Overlap { a: 3, b: 7 }),
                    "{x:?} {y:?}"
                );
            }
        }
        // An overlap hidden behind a long partition that starts first.
        let entries = [part(1, 34, 300), part(2, 100, 120), part(3, 200, 210)];
        assert!(matches!(
            check_layout(&entries, 34, 400),
            Err(LayoutProblem::Overlap { .. })
        ));
    }
}
