//! The GPT header (UEFI 2.10 section 5.3.2): parsing with every check a reader must make, and
//! re-encoding that changes only the location fields and the two CRCs.

use uuid::Uuid;

use alloc::vec::Vec;

use super::CopyProblem;

/// Size of the header fields defined by the specification.
pub const HEADER_MIN_SIZE: usize = 92;
/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0, the only one defined.
const REVISION_1_0: u32 = 0x0001_0000;
/// Refuse entry arrays above this size (the usual one is 16 KiB) rather than allocate blindly.
pub const MAX_ENTRIES_BYTES: u64 = 4 << 20;

const OFF_HEADER_SIZE: usize = 12;
const OFF_HEADER_CRC: usize = 16;
const OFF_MY_LBA: usize = 24;
const OFF_ALTERNATE_LBA: usize = 32;
const OFF_FIRST_USABLE: usize = 40;
const OFF_LAST_USABLE: usize = 48;
const OFF_DISK_GUID: usize = 56;
const OFF_ENTRIES_LBA: usize = 72;
const OFF_NUM_ENTRIES: usize = 80;
const OFF_ENTRY_SIZE: usize = 84;
const OFF_ENTRIES_CRC: usize = 88;

/// A parsed, CRC-checked GPT header together with its raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    raw: Vec<u8>,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Uuid,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(x)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(x)
}

pub(crate) fn guid_at(b: &[u8], off: usize) -> Uuid {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[off..off + 16]);
    // GPT stores GUIDs with the first three fields little endian.
    Uuid::from_bytes_le(x)
}

fn crc_with_zeroed_field(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..OFF_HEADER_CRC]);
    h.update(&[0; 4]);
    h.update(&bytes[OFF_HEADER_CRC + 4..]);
    h.finalize()
}

impl Header {
    /// Parses and checks the header in `sector`, which was read from `lba` of a disk with
    /// `disk_sectors` sectors. The entry array is checked separately (see
    /// [`Header::check_entries`]).
    pub fn parse(sector: &[u8], lba: u64, disk_sectors: u64) -> Result<Self, CopyProblem> {
        if sector.len() < HEADER_MIN_SIZE || &sector[..8] != SIGNATURE {
            return Err(CopyProblem::BadSignature);
        }
        let revision = u32_at(sector, 8);
        if revision != REVISION_1_0 {
            return Err(CopyProblem::UnsupportedRevision(revision));
        }
        let size = u32_at(sector, OFF_HEADER_SIZE);
        let size_ok =
            usize::try_from(size).is_ok_and(|s| (HEADER_MIN_SIZE..=sector.len()).contains(&s));
        if !size_ok {
            return Err(CopyProblem::BadHeaderSize(size));
        }
        let raw = sector[..size as usize].to_vec();
        let stored = u32_at(&raw, OFF_HEADER_CRC);
        let computed = crc_with_zeroed_field(&raw);
        if stored != computed {
            return Err(CopyProblem::HeaderCrc { stored, computed });
        }
        let h = Header {
            my_lba: u64_at(&raw, OFF_MY_LBA),
            alternate_lba: u64_at(&raw, OFF_ALTERNATE_LBA),
            first_usable_lba: u64_at(&raw, OFF_FIRST_USABLE),
            last_usable_lba: u64_at(&raw, OFF_LAST_USABLE),
            disk_guid: guid_at(&raw, OFF_DISK_GUID),
            entries_lba: u64_at(&raw, OFF_ENTRIES_LBA),
            num_entries: u32_at(&raw, OFF_NUM_ENTRIES),
            entry_size: u32_at(&raw, OFF_ENTRY_SIZE),
            entries_crc: u32_at(&raw, OFF_ENTRIES_CRC),
            raw,
        };
        if h.my_lba != lba {
            return Err(CopyProblem::WrongLocation {
                expected: lba,
                found: h.my_lba,
            });
        }
        let last = disk_sectors.saturating_sub(1);
        if h.first_usable_lba > h.last_usable_lba || h.last_usable_lba >= last {
            return Err(CopyProblem::BadUsableRange {
                first: h.first_usable_lba,
                last: h.last_usable_lba,
            });
        }
        let bytes = h.entries_bytes();
        if h.num_entries == 0
            || h.entry_size < 128
            || h.entry_size % 128 != 0
            || bytes > MAX_ENTRIES_BYTES
        {
            return Err(CopyProblem::BadEntryLayout {
                entries: h.num_entries,
                entry_size: h.entry_size,
            });
        }
        Ok(h)
    }

    /// Size of the entry array in bytes.
    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }

    /// Sectors the entry array occupies.
    pub fn entries_sectors(&self, sector_size: u64) -> u64 {
        self.entries_bytes().div_ceil(sector_size)
    }

    /// Whether the entry array lies on the disk, clear of the MBR, the primary header and the
    /// usable area.
    pub fn entries_in_bounds(&self, entries_lba: u64, sector_size: u64, disk_sectors: u64) -> bool {
        let end = entries_lba.saturating_add(self.entries_sectors(sector_size));
        let outside_usable = end <= self.first_usable_lba || entries_lba > self.last_usable_lba;
        entries_lba >= 2 && end <= disk_sectors && outside_usable
    }

    /// Checks the entry array read for this header against its CRC.
    pub fn check_entries(&self, entries: &[u8]) -> Result<(), CopyProblem> {
        let computed = crc32fast::hash(entries);
        if computed != self.entries_crc {
            return Err(CopyProblem::EntriesCrc {
                stored: self.entries_crc,
                computed,
            });
        }
        Ok(())
    }

    /// The header bytes (header_size of them) placed at `my_lba`, pointing to `alternate_lba` and
    /// to an entry array at `entries_lba` with CRC `entries_crc`; every other byte as parsed.
    pub fn encode(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        entries_crc: u32,
    ) -> Vec<u8> {
        let mut b = self.raw.clone();
        b[OFF_MY_LBA..OFF_MY_LBA + 8].copy_from_slice(&my_lba.to_le_bytes());
        b[OFF_ALTERNATE_LBA..OFF_ALTERNATE_LBA + 8].copy_from_slice(&alternate_lba.to_le_bytes());
        b[OFF_ENTRIES_LBA..OFF_ENTRIES_LBA + 8].copy_from_slice(&entries_lba.to_le_bytes());
        b[OFF_ENTRIES_CRC..OFF_ENTRIES_CRC + 4].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc_with_zeroed_field(&b);
        b[OFF_HEADER_CRC..OFF_HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Whether two headers describe the same table (all but the location fields and CRCs).
    pub fn same_table_as(&self, other: &Header) -> bool {
        self.first_usable_lba == other.first_usable_lba
            && self.last_usable_lba == other.last_usable_lba
            && self.disk_guid == other.disk_guid
            && self.num_entries == other.num_entries
            && self.entry_size == other.entry_size
            && self.entries_crc == other.entries_crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as sgdisk writes it for a 2048-sector disk.
    fn sample(lba: u64) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&REVISION_1_0.to_le_bytes());
        b[12..16].copy_from_slice(&92u32.to_le_bytes());
        let alt = if lba == 1 { 2047u64 } else { 1 };
        let elba = if lba == 1 { 2u64 } else { 2015 };
        b[24..32].copy_from_slice(&lba.to_le_bytes());
        b[32..40].copy_from_slice(&alt.to_le_bytes());
        b[40..48].copy_from_slice(&34u64.to_le_bytes());
        b[48..56].copy_from_slice(&2014u64.to_le_bytes());
        b[56..72].copy_from_slice(&[7; 16]);
        b[72..80].copy_from_slice(&elba.to_le_bytes());
        b[80..84].copy_from_slice(&128u32.to_le_bytes());
        b[84..88].copy_from_slice(&128u32.to_le_bytes());
        b[88..92].copy_from_slice(&crc32fast::hash(&[0u8; 128 * 128]).to_le_bytes());
        let crc = crc_with_zeroed_field(&b[..92]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn parses_and_reencodes_identically() {
        let raw = sample(1);
        let h = Header::parse(&raw, 1, 2048).unwrap();
        assert_eq!(
            (h.alternate_lba, h.entries_lba, h.num_entries),
            (2047, 2, 128)
        );
        assert_eq!(h.encode(1, 2047, 2, h.entries_crc), raw[..92].to_vec());
        h.check_entries(&[0u8; 128 * 128]).unwrap();
        assert!(h.entries_in_bounds(2, 512, 2048));
        assert!(!h.entries_in_bounds(2014, 512, 2048));
        assert!(h.entries_in_bounds(2015, 512, 2048));
    }

    #[test]
    fn every_check_reports_its_problem() {
        let raw = sample(1);
        assert_eq!(
            Header::parse(&[0; 512], 1, 2048),
            Err(CopyProblem::BadSignature)
        );
        let mut flipped = raw.clone();
        flipped[40] ^= 1;
        assert!(matches!(
            Header::parse(&flipped, 1, 2048),
            Err(CopyProblem::HeaderCrc { .. })
        ));
        assert_eq!(
            Header::parse(&raw, 2047, 2048),
            Err(CopyProblem::WrongLocation {
                expected: 2047,
                found: 1
            })
        );
        assert!(matches!(
            Header::parse(&raw, 1, 1000),
            Err(CopyProblem::BadUsableRange { .. })
        ));
        let mut big = raw.clone();
        big[12..16].copy_from_slice(&600u32.to_le_bytes());
        assert_eq!(
            Header::parse(&big, 1, 2048),
            Err(CopyProblem::BadHeaderSize(600))
        );
        let h = Header::parse(&raw, 1, 2048).unwrap();
        assert!(matches!(
            h.check_entries(&[1u8; 128 * 128]),
            Err(CopyProblem::EntriesCrc { .. })
        ));
    }

    #[test]
    fn odd_entry_layouts_are_refused() {
        for (n, size) in [(0u32, 128u32), (128, 64), (128, 200), (1 << 20, 128)] {
            let h = Header::parse(&sample(1), 1, 2048).unwrap();
            let mut raw = h.raw.clone();
            raw[80..84].copy_from_slice(&n.to_le_bytes());
            raw[84..88].copy_from_slice(&size.to_le_bytes());
            let crc = crc_with_zeroed_field(&raw);
            raw[16..20].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(
                Header::parse(&raw, 1, 2048),
                Err(CopyProblem::BadEntryLayout {
                    entries: n,
                    entry_size: size
                })
            );
        }
    }
}
