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
}
