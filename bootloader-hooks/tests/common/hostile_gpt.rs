//! A hostile but well-formed GPT for tests: entries rewritten with valid CRCs, which sgdisk and
//! cgpt refuse to make. Shared by the bootloader-hooks and updater tests (the updater includes
//! this file by path).

use std::path::Path;

/// Rewrites partition `number`'s first and last LBA in both GPT copies of a 512-byte-sector
/// image, with valid CRCs: a hostile but well-formed table that sgdisk and cgpt refuse to make.
pub fn set_entry_lbas(img: &Path, number: u32, first: u64, last: u64) {
    let mut bytes = std::fs::read(img).unwrap();
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let backup_lba = u64_at(&bytes[512..], 32);
    for header_lba in [1u64, backup_lba] {
        let h = usize::try_from(header_lba * 512).unwrap();
        let entries = usize::try_from(u64_at(&bytes[h..], 72) * 512).unwrap();
        let (count, size) = (u32_at(&bytes[h..], 80), u32_at(&bytes[h..], 84));
        let array = entries..entries + (count * size) as usize;
        let e = entries + (number as usize - 1) * size as usize;
        bytes[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
        bytes[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        let crc = crc32fast::hash(&bytes[array]);
        bytes[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        let header_size = u32_at(&bytes[h..], 12) as usize;
        bytes[h + 16..h + 20].fill(0);
        let crc = crc32fast::hash(&bytes[h..h + header_size]);
        bytes[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(img, bytes).unwrap();
}
