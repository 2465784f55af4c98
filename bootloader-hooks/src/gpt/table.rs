//! Reading, checking, repairing and rewriting a whole GPT: protective MBR, primary header at
//! LBA 1, backup header at the last LBA (or where the primary says), and their entry arrays.
//!
//! Write order: the copy that is valid now is overwritten last, with a flush after each copy.
//! Normally that means the backup first, then the primary (as Bottlerocket's GRUB does), so a
//! power cut at any byte leaves the old primary or the complete new backup. When only the backup
//! is valid, the broken primary is rebuilt first instead: writing the backup first would risk
//! losing the only valid copy.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::entry::{PartitionEntry, PartitionSelector, ATTRS_OFFSET};
use super::header::Header;
use super::{has_protective_mbr, CopyProblem};
use crate::attrs::BootAttrs;
use crate::device::{BlockDevice, Disk};
use crate::error::{Error, Result};

/// Logical sector sizes tried, in order: a header is looked for at LBA 1 of each.
const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// One of the two copies of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    Primary,
    Backup,
}

impl CopyKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CopyKind::Primary => "primary",
            CopyKind::Backup => "backup",
        }
    }
}

/// What was found wrong with the table as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableHealth {
    /// Why the primary copy is unusable, if it is.
    pub primary: Option<CopyProblem>,
    /// Why the backup copy is unusable, if it is.
    pub backup: Option<CopyProblem>,
    /// Both copies are valid and describe the same table.
    pub copies_agree: bool,
}

/// A valid header with the entry array it covers.
#[derive(Clone, Debug)]
struct ValidCopy {
    header: Header,
    entries: Vec<u8>,
}

/// A GPT read from a disk, held in memory. Changes (attributes only) stay in memory until
/// [`GptTable::write`].
#[derive(Clone, Debug)]
pub struct GptTable {
    disk: String,
    sector_size: u64,
    disk_sectors: u64,
    primary: Result<Header, CopyProblem>,
    backup: Result<Header, CopyProblem>,
    copies_agree: bool,
    source: CopyKind,
    /// Header of the copy the table was taken from.
    header: Header,
    /// The entry array as read from the source copy.
    entries_read: Vec<u8>,
    /// The entry array with the changes made since.
    entries: Vec<u8>,
}

impl GptTable {
    /// Reads and checks the table on `disk`, from the primary copy if it is valid, else from the
    /// backup. Fails when there is no protective MBR or neither copy is valid.
    pub fn read<D: BlockDevice>(disk: &mut Disk<D>) -> Result<Self> {
        let len = disk.len()?;
        if len < 3 * SECTOR_SIZES[0] {
            return Err(Error::DiskTooSmall {
                disk: disk.name().to_string(),
                len,
            });
        }
        let mut mbr = [0u8; 512];
        disk.read_at(0, &mut mbr)?;
        if !has_protective_mbr(&mbr) {
            return Err(Error::NoProtectiveMbr {
                disk: disk.name().to_string(),
            });
        }

        let mut failures = Vec::new();
        for sector_size in SECTOR_SIZES {
            if len < 3 * sector_size {
                continue;
            }
            let disk_sectors = len / sector_size;
            let primary = read_copy(disk, sector_size, 1, disk_sectors)?;
            let backup_lba = match &primary {
                Ok(c) => c.header.alternate_lba,
                Err(_) => disk_sectors - 1,
            };
            let backup = read_copy(disk, sector_size, backup_lba, disk_sectors)?;
            match Self::assemble(disk.name(), sector_size, disk_sectors, primary, backup) {
                Ok(table) => return Ok(table),
                Err(problems) => failures.push(problems),
            }
        }
        // Report the sector size at which a header was at least recognisable.
        let unrecognised = |p: &(CopyProblem, CopyProblem)| {
            p.0 == CopyProblem::BadSignature && p.1 == CopyProblem::BadSignature
        };
        let pick = failures.iter().position(|f| !unrecognised(f)).unwrap_or(0);
        let (primary, backup) = failures
            .into_iter()
            .nth(pick)
            .unwrap_or((CopyProblem::BadSignature, CopyProblem::BadSignature));
        Err(Error::BothCopiesCorrupt {
            disk: disk.name().to_string(),
            primary,
            backup,
        })
    }

    fn assemble(
        disk: &str,
        sector_size: u64,
        disk_sectors: u64,
        primary: Result<ValidCopy, CopyProblem>,
        backup: Result<ValidCopy, CopyProblem>,
    ) -> core::result::Result<Self, (CopyProblem, CopyProblem)> {
        let copies_agree = match (&primary, &backup) {
            (Ok(p), Ok(b)) => {
                p.header.same_table_as(&b.header)
                    && p.entries == b.entries
                    && p.header.alternate_lba == b.header.my_lba
                    && b.header.alternate_lba == 1
            }
            _ => false,
        };
        let (source, chosen) = match (&primary, &backup) {
            (Ok(p), _) => (CopyKind::Primary, p.clone()),
            (Err(_), Ok(b)) => (CopyKind::Backup, b.clone()),
            (Err(p), Err(b)) => return Err((p.clone(), b.clone())),
        };
        Ok(Self {
            disk: disk.to_string(),
            sector_size,
            disk_sectors,
            primary: primary.map(|c| c.header),
            backup: backup.map(|c| c.header),
            copies_agree,
            source,
            header: chosen.header,
            entries_read: chosen.entries.clone(),
            entries: chosen.entries,
        })
    }

    /// The disk's name, as errors report it.
    pub fn disk(&self) -> &str {
        &self.disk
    }

    /// Logical sector size the table was found at (512 or 4096).
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }

    /// Which copy the table was read from.
    pub fn source(&self) -> CopyKind {
        self.source
    }

    /// The header of the copy the table was read from.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Problems found while reading.
    pub fn health(&self) -> TableHealth {
        TableHealth {
            primary: self.primary.as_ref().err().cloned(),
            backup: self.backup.as_ref().err().cloned(),
            copies_agree: self.copies_agree,
        }
    }

    /// Whether a copy is broken or the copies differ; [`GptTable::write`] repairs both.
    pub fn needs_repair(&self) -> bool {
        !self.copies_agree
    }

    /// Whether attributes were changed since the table was read or last written.
    pub fn is_modified(&self) -> bool {
        self.entries != self.entries_read
    }

    fn entry_size(&self) -> usize {
        // Bounded by MAX_ENTRIES_BYTES when parsed.
        self.header.entry_size as usize
    }

    /// Every used partition entry, in table order.
    pub fn partitions(&self) -> Vec<PartitionEntry> {
        self.entries
            .chunks_exact(self.entry_size())
            .zip(1u32..)
            .filter_map(|(bytes, number)| PartitionEntry::parse(number, bytes))
            .collect()
    }

    /// The one used entry `selector` names.
    pub fn find(&self, selector: &PartitionSelector) -> Result<PartitionEntry> {
        let mut found: Vec<PartitionEntry> = self
            .partitions()
            .into_iter()
            .filter(|e| selector.matches(e))
            .collect();
        match found.len() {
            0 => Err(Error::PartitionNotFound {
                disk: self.disk.clone(),
                selector: selector.to_string(),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousPartition {
                disk: self.disk.clone(),
                selector: selector.to_string(),
                indices: found.iter().map(|e| e.number).collect(),
            }),
        }
    }

    /// Used entry number `number` (1-based), if any.
    pub fn partition(&self, number: u32) -> Option<PartitionEntry> {
        let range = self.entry_range(number)?;
        PartitionEntry::parse(number, &self.entries[range])
    }

    fn entry_range(&self, number: u32) -> Option<core::ops::Range<usize>> {
        let size = self.entry_size();
        let start = usize::try_from(number).ok()?.checked_sub(1)? * size;
        let end = start + size;
        (end <= self.entries.len()).then_some(start..end)
    }

    /// Replaces the attribute field of used entry `number`, in memory.
    pub fn set_attrs(&mut self, number: u32, attrs: BootAttrs) -> Result<()> {
        if self.partition(number).is_none() {
            return Err(Error::NoSuchEntry {
                disk: self.disk.clone(),
                index: number,
            });
        }
        let range = self.entry_range(number).ok_or_else(|| Error::NoSuchEntry {
            disk: self.disk.clone(),
            index: number,
        })?;
        let at = range.start + ATTRS_OFFSET;
        self.entries[at..at + 8].copy_from_slice(&attrs.raw().to_le_bytes());
        Ok(())
    }

    /// Writes both copies with the current entries (this also repairs a broken or stale copy):
    /// the copy that is valid now goes last, each copy is flushed, and the table is read back.
    /// Only the attribute fields and the CRCs change on disk.
    pub fn write<D: BlockDevice>(&mut self, disk: &mut Disk<D>) -> Result<()> {
        let plan = self.plan()?;
        let [first, second] = match self.source {
            CopyKind::Primary => [
                (CopyKind::Backup, &plan.backup),
                (CopyKind::Primary, &plan.primary),
            ],
            CopyKind::Backup => [
                (CopyKind::Primary, &plan.primary),
                (CopyKind::Backup, &plan.backup),
            ],
        };
        self.write_copy(disk, first.1)?;
        #[cfg(feature = "gpt-pause")]
        super::pause::between_copies(disk.name(), first.0, second.0);
        self.write_copy(disk, second.1)?;
        let reread = GptTable::read(disk)?;
        if reread.needs_repair() || reread.entries != self.entries {
            return Err(Error::WriteNotVerified {
                disk: disk.name().to_string(),
            });
        }
        *self = reread;
        Ok(())
    }

    /// One copy: its entry array, then its header, then a flush.
    fn write_copy<D: BlockDevice>(&self, disk: &mut Disk<D>, copy: &PlannedCopy) -> Result<()> {
        disk.write_at(copy.entries_lba * self.sector_size, &self.entries)?;
        disk.write_at(copy.lba * self.sector_size, &copy.header)?;
        disk.sync()
    }

    /// Where each copy goes and the header bytes to write there.
    fn plan(&self) -> Result<WritePlan> {
        let ss = self.sector_size;
        let h = &self.header;
        let bad = |copy: CopyKind, lba: u64| Error::BadGeometry {
            disk: self.disk.clone(),
            copy: copy.name(),
            lba,
        };
        let backup_lba = match self.source {
            CopyKind::Primary => h.alternate_lba,
            CopyKind::Backup => h.my_lba,
        };
        if backup_lba <= h.last_usable_lba || backup_lba >= self.disk_sectors {
            return Err(bad(CopyKind::Backup, backup_lba));
        }
        let primary_entries = match &self.primary {
            Ok(p) => p.entries_lba,
            Err(_) => 2,
        };
        let backup_entries = match &self.backup {
            Ok(b) => b.entries_lba,
            Err(_) => backup_lba
                .checked_sub(h.entries_sectors(ss))
                .ok_or_else(|| bad(CopyKind::Backup, backup_lba))?,
        };
        for (copy, lba) in [
            (CopyKind::Primary, primary_entries),
            (CopyKind::Backup, backup_entries),
        ] {
            if !h.entries_in_bounds(lba, ss, self.disk_sectors) {
                return Err(bad(copy, lba));
            }
        }
        if backup_entries + h.entries_sectors(ss) > backup_lba {
            return Err(bad(CopyKind::Backup, backup_entries));
        }

        let crc = crc32fast::hash(&self.entries);
        let sector = usize::try_from(ss).unwrap_or(512);
        let encode = |valid: bool, lba: u64, alternate: u64, entries_lba: u64| {
            let mut bytes = h.encode(lba, alternate, entries_lba, crc);
            if !valid {
                // A rebuilt copy gets a clean sector: the rest of it is reserved and zero.
                bytes.resize(sector, 0);
            }
            bytes
        };
        Ok(WritePlan {
            primary: PlannedCopy {
                lba: 1,
                entries_lba: primary_entries,
                header: encode(self.primary.is_ok(), 1, backup_lba, primary_entries),
            },
            backup: PlannedCopy {
                lba: backup_lba,
                entries_lba: backup_entries,
                header: encode(self.backup.is_ok(), backup_lba, 1, backup_entries),
            },
        })
    }
}

struct PlannedCopy {
    lba: u64,
    entries_lba: u64,
    header: Vec<u8>,
}

struct WritePlan {
    primary: PlannedCopy,
    backup: PlannedCopy,
}

/// Reads and checks one copy; the outer error is an I/O failure, the inner one a bad copy.
fn read_copy<D: BlockDevice>(
    disk: &mut Disk<D>,
    sector_size: u64,
    lba: u64,
    disk_sectors: u64,
) -> Result<core::result::Result<ValidCopy, CopyProblem>> {
    if lba == 0 || lba >= disk_sectors {
        return Ok(Err(CopyProblem::OutsideDisk { lba }));
    }
    let mut sector = vec![0u8; usize::try_from(sector_size).unwrap_or(512)];
    disk.read_at(lba * sector_size, &mut sector)?;
    let header = match Header::parse(&sector, lba, disk_sectors) {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    if !header.entries_in_bounds(header.entries_lba, sector_size, disk_sectors) {
        return Ok(Err(CopyProblem::EntriesOutOfBounds {
            lba: header.entries_lba,
        }));
    }
    // entries_bytes() is capped at MAX_ENTRIES_BYTES by Header::parse.
    let mut entries = vec![0u8; header.entries_bytes() as usize];
    disk.read_at(header.entries_lba * sector_size, &mut entries)?;
    if let Err(p) = header.check_entries(&entries) {
        return Ok(Err(p));
    }
    Ok(Ok(ValidCopy { header, entries }))
}
