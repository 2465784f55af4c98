//! The disk holding both slots, opened once: the GPT and its boot state (through
//! `flipside-bootloader-hooks`), and slot data written through the same whole-disk device at the
//! partition's byte offset, bounds-checked to the partition. One device means one page cache
//! for slot data and table, the same on an image file, a loop device and a block device.
//!
//! [`Device`] is generic over the medium: `flipside_bootloader_hooks::BlockDevice` (byte
//! offsets, flush; the trait the GPT code already reads and writes through) plus [`ReadBack`],
//! a read past any cache. [`DiskFile`] is the real disk ([`file`]: `O_DIRECT`), [`MemoryDisk`]
//! one in memory for the tests of the install steps.

use std::ops::Range;
use std::path::{Path, PathBuf};

use flipside_bootloader_hooks::{disk, BlockDevice, BootState, Disk, GptTable, Slot, SlotLayout};

use crate::config::{DeviceConfig, ReadbackMode};
use crate::error::{Error, Result};

pub mod behind;
pub mod file;
pub mod memory;

pub use behind::{Expected, ReadBehind};
pub use file::DiskFile;
pub use memory::MemoryDisk;

/// A medium that can be read back past any cache it has, so that a check sees what reached
/// the medium, not what the page cache remembers.
pub trait ReadBack: BlockDevice {
    /// The name errors report the medium by (its path).
    fn name(&self) -> &Path;

    /// sha256 of the bytes `range` of the medium, read bypassing its cache as `mode` allows.
    /// `progress` gets the bytes hashed so far. Called after a flush.
    fn hash_uncached(
        &mut self,
        range: Range<u64>,
        mode: ReadbackMode,
        progress: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], Readback)>;

    /// A reader of the medium past its cache for a [`ReadBehind`] thread, as `mode` allows;
    /// `None` if the medium has none (the part is then read back whole at the end).
    fn uncached(&self, mode: ReadbackMode) -> Option<Box<dyn behind::Uncached>>;
}

/// How a slot was read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readback {
    /// `O_DIRECT`: straight from the device.
    Direct,
    /// fsync + `posix_fadvise(DONTNEED)`, then a buffered read.
    Dropped,
}

/// Which partition of a slot: its root filesystem (which also carries the slot's boot bits) or
/// its kernel partition (a unified kernel image that flipside-boot loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Root,
    Kernel,
}

impl Part {
    /// `root` or `kernel`, as the journal and the `FLIPSIDE_SYNCED` lines name it.
    pub const fn name(self) -> &'static str {
        match self {
            Part::Root => "root",
            Part::Kernel => "kernel",
        }
    }
}

/// A partition an install writes: one part of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub slot: Slot,
    pub part: Part,
}

impl Region {
    pub fn kernel(slot: Slot) -> Region {
        Region {
            slot,
            part: Part::Kernel,
        }
    }
}

impl From<Slot> for Region {
    /// A slot's root partition.
    fn from(slot: Slot) -> Region {
        Region {
            slot,
            part: Part::Root,
        }
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::Root => write!(f, "slot {}", self.slot),
            Part::Kernel => write!(f, "the kernel partition of slot {}", self.slot),
        }
    }
}

/// An opened disk with its table and boot state.
pub struct Device<B = DiskFile> {
    path: PathBuf,
    block: B,
    writable: bool,
    table: GptTable,
    state: BootState,
    /// Partition numbers of the kernel partitions of slots a and b, when the disk has them.
    kernels: Option<[u32; 2]>,
    layout: SlotLayout,
}

impl<B> std::fmt::Debug for Device<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("path", &self.path)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Opens the configured disk (read-write when `writable`), reads its GPT, the slots' state
    /// and, when the disk has both, the slots' kernel partitions (`device.kernel_layout`).
    pub fn open(config: &DeviceConfig, writable: bool) -> Result<Device> {
        let file = DiskFile::open(&config.disk, writable)?;
        Device::load(file, config, writable)
    }
}

impl<B: ReadBack> Device<B> {
    /// Reads the GPT on `block`, the slots' state and their kernel partitions, if any.
    pub fn load(mut block: B, config: &DeviceConfig, writable: bool) -> Result<Device<B>> {
        let path = block.name().to_path_buf();
        let (table, state) = {
            let mut disk = Disk::new(path.display().to_string(), &mut block);
            disk::load(&mut disk, &config.layout)?
        };
        let kernels = kernel_partitions(&table, &config.kernel_layout)?;
        Ok(Device {
            path,
            block,
            writable,
            table,
            state,
            kernels,
            layout: config.layout.clone(),
        })
    }

    /// The medium (a test inspects what was written).
    pub fn block(&self) -> &B {
        &self.block
    }

    /// Whether each slot has its own kernel partition (booted by flipside-boot).
    pub fn has_kernel_partitions(&self) -> bool {
        self.kernels.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state(&self) -> &BootState {
        &self.state
    }

    pub fn table(&self) -> &GptTable {
        &self.table
    }

    /// Writes `next` into the table (backup first, flushed) if it differs from what is there.
    pub fn commit(&mut self, next: &BootState) -> Result<()> {
        if !self.writable {
            return Err(Error::Internal {
                what: "commit on a read-only device".into(),
            });
        }
        let mut disk = Disk::new(self.path.display().to_string(), &mut self.block);
        // Only a change of the state this command read: anything else that wrote the bits
        // since (another tool, a command that did not take the lock) wins, and nothing is
        // written over it.
        let (table, on_disk) = disk::load(&mut disk, &self.layout)?;
        if on_disk != self.state {
            return Err(Error::BootStateChanged {
                disk: self.path.clone(),
                expected: self.state.to_string().replace('\n', "; "),
                found: on_disk.to_string().replace('\n', "; "),
            });
        }
        self.table = table;
        disk::commit(&mut disk, &mut self.table, next)?;
        self.state = next.clone();
        Ok(())
    }

    /// The bytes of the disk a region occupies (the table's entries were checked for inverted,
    /// overlapping and out-of-area ranges when it was loaded; empty if the arithmetic fails or
    /// the disk has no kernel partitions).
    pub fn slot_range(&self, region: impl Into<Region>) -> Range<u64> {
        let region = region.into();
        let number = match (region.part, self.kernels) {
            (Part::Root, _) => self.state.slot(region.slot).partition.number,
            (Part::Kernel, Some([a, b])) => match region.slot {
                Slot::A => a,
                Slot::B => b,
            },
            (Part::Kernel, None) => return 0..0,
        };
        self.table
            .partition(number)
            .and_then(|e| e.byte_range(self.table.sector_size()))
            .unwrap_or(0..0)
    }

    /// Size of a region in bytes.
    pub fn slot_len(&self, region: impl Into<Region>) -> u64 {
        let r = self.slot_range(region);
        r.end - r.start
    }

    fn checked(&self, op: &'static str, region: Region, offset: u64, len: u64) -> Result<u64> {
        let range = self.slot_range(region);
        let slot_length = range.end - range.start;
        match offset.checked_add(len) {
            Some(end) if end <= slot_length => Ok(range.start + offset),
            _ => Err(Error::OutOfSlot {
                op,
                region,
                offset,
                len,
                slot_length,
            }),
        }
    }

    /// Writes `data` at `offset` inside a region.
    pub fn write_slot(
        &mut self,
        region: impl Into<Region>,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let at = self.checked("write", region.into(), offset, data.len() as u64)?;
        self.block
            .write_at(at, data)
            .map_err(|source| Error::DiskIo {
                op: "write",
                disk: self.path.clone(),
                offset: at,
                len: data.len() as u64,
                source,
            })
    }

    /// Reads `buf.len()` bytes at `offset` inside a region (through the page cache).
    pub fn read_slot(
        &mut self,
        region: impl Into<Region>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let at = self.checked("read", region.into(), offset, buf.len() as u64)?;
        self.block.read_at(at, buf).map_err(|source| Error::DiskIo {
            op: "read",
            disk: self.path.clone(),
            offset: at,
            len: buf.len() as u64,
            source,
        })
    }

    /// Makes everything written durable (fdatasync; on a block device also a cache flush).
    pub fn sync(&mut self) -> Result<()> {
        self.block.sync().map_err(|source| Error::DiskIo {
            op: "flush",
            disk: self.path.clone(),
            offset: 0,
            len: 0,
            source,
        })
    }

    /// sha256 of the first `len` bytes of a region, flushed, then read bypassing the page cache
    /// (with `O_DIRECT` when `mode` allows and the file system supports it). `progress` gets
    /// the bytes hashed so far.
    pub fn hash_slot_uncached(
        &mut self,
        region: impl Into<Region>,
        len: u64,
        mode: ReadbackMode,
        progress: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], Readback)> {
        let start = self.checked("read back", region.into(), 0, len)?;
        self.sync()?;
        self.block.hash_uncached(start..start + len, mode, progress)
    }
}

impl<B: ReadBack> Device<B> {
    /// A read-behind for `region`, whose index has `chunks` chunks, if the medium offers one.
    pub fn read_behind(
        &self,
        region: Region,
        chunks: usize,
        mode: ReadbackMode,
    ) -> Option<ReadBehind> {
        let range = self.slot_range(region);
        let medium = self.block.uncached(mode)?;
        Some(ReadBehind::start(
            medium,
            behind::Place {
                region,
                disk: self.path.clone(),
                base: range.start,
                length: range.end - range.start,
                chunks,
            },
        ))
    }
}

/// The kernel partitions `layout` names, if the disk has them: both or neither (one without the
/// other is a table to repair, not a layout to guess at).
fn kernel_partitions(table: &GptTable, layout: &SlotLayout) -> Result<Option<[u32; 2]>> {
    let found = Slot::ALL.map(|slot| table.find(layout.selector(slot)));
    match found {
        [Ok(a), Ok(b)] => Ok(Some([a.number, b.number])),
        [Err(flipside_bootloader_hooks::Error::PartitionNotFound { .. }), Err(flipside_bootloader_hooks::Error::PartitionNotFound { .. })] => {
            Ok(None)
        }
        [Err(e), _] | [_, Err(e)] => Err(e.into()),
    }
}
