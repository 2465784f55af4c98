//! A small GPT codec: reads the protective MBR and both table copies with their CRCs, picks a
//! valid copy, finds partitions, changes attribute fields, and writes both copies back in an
//! order that survives a power cut at any byte.

mod header;
// Test builds only (QEMU power-cut tests): a stop between the two copies of a table write.
#[cfg(feature = "gpt-pause")]
pub mod pause;
mod table;

pub mod entry;

pub use entry::{check_layout, LayoutProblem, PartitionEntry, PartitionSelector};
pub use header::{Header, MAX_ENTRIES_BYTES};
pub use table::{CopyKind, GptTable, TableHealth};

/// Why one copy of the table (header plus entry array) cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CopyProblem {
    #[error("no \"EFI PART\" signature")]
    BadSignature,
    #[error("unsupported header revision {0:#010x}")]
    UnsupportedRevision(u32),
    #[error("header size {0} is outside 92..=sector size")]
    BadHeaderSize(u32),
    #[error("header CRC32 is {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("header says it lives at LBA {found}, read from LBA {expected}")]
    WrongLocation { expected: u64, found: u64 },
    #[error("usable range {first}..={last} does not fit the disk")]
    BadUsableRange { first: u64, last: u64 },
    #[error("entry layout {entries} x {entry_size} bytes is not supported")]
    BadEntryLayout { entries: u32, entry_size: u32 },
    #[error("entry array at LBA {lba} overlaps the usable area or lies outside the disk")]
    EntriesOutOfBounds { lba: u64 },
    #[error("entry array CRC32 is {stored:#010x}, computed {computed:#010x}")]
    EntriesCrc { stored: u32, computed: u32 },
    #[error("header at LBA {lba} lies outside the disk")]
    OutsideDisk { lba: u64 },
}

/// Whether sector 0 is a protective (or hybrid) MBR: the 0x55AA signature and a partition
/// record of type 0xEE.
pub fn has_protective_mbr(sector0: &[u8]) -> bool {
    if sector0.len() < 512 || sector0[510..512] != [0x55, 0xaa] {
        return false;
    }
    (0..4).any(|i| sector0[446 + 16 * i + 4] == 0xee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protective_mbr_needs_signature_and_ee_record() {
        let mut s = vec![0u8; 512];
        assert!(!has_protective_mbr(&s));
        s[510] = 0x55;
        s[511] = 0xaa;
        assert!(!has_protective_mbr(&s));
        s[446 + 16 + 4] = 0xee;
        assert!(has_protective_mbr(&s));
        assert!(!has_protective_mbr(&s[..500]));
    }
}
