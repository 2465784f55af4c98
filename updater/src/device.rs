//! The disk holding both slots, opened once: the GPT and its boot state (through
//! `flipside-bootloader-hooks`), and slot data written through the same whole-disk file at the
//! partition's byte offset, bounds-checked to the partition. One file descriptor means one page
//! cache for slot data and table, the same on an image file, a loop device and a block device.
//!
//! [`Device::hash_slot_uncached`] reads a slot back bypassing the page cache: `O_DIRECT` where
//! the file system supports it, else fsync + `posix_fadvise(DONTNEED)` and a buffered read.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use flipside_bootloader_hooks::{disk, BootState, Disk, GptTable, Slot, SlotLayout};

use crate::config::DeviceConfig;
use sha2::{Digest, Sha256};

use crate::config::ReadbackMode;
use crate::error::{Error, Result};

/// Alignment used for `O_DIRECT` reads (covers 512- and 4096-byte logical sectors).
const DIRECT_ALIGN: u64 = 4096;
/// Bytes per read when hashing a slot back.
const HASH_BLOCK: usize = 1 << 20;
/// Blocks read ahead of the hasher.
const READ_AHEAD: usize = 3;

/// A heap buffer whose usable part starts on a [`DIRECT_ALIGN`] boundary, as `O_DIRECT` needs.
struct AlignedBuf {
    raw: Vec<u8>,
    shift: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + DIRECT_ALIGN as usize];
        let shift = raw.as_ptr().align_offset(DIRECT_ALIGN as usize);
        AlignedBuf { raw, shift, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.shift..self.shift + self.len]
    }

    fn as_ref(&self) -> &[u8] {
        &self.raw[self.shift..self.shift + self.len]
    }
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
pub struct Device {
    path: PathBuf,
    file: File,
    writable: bool,
    table: GptTable,
    state: BootState,
    /// Partition numbers of the kernel partitions of slots a and b, when the disk has them.
    kernels: Option<[u32; 2]>,
    layout: SlotLayout,
}

impl std::fmt::Debug for Device {
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
        let mut device = Device::open_disk(&config.disk, &config.layout, writable)?;
        device.kernels = kernel_partitions(&device.table, &config.kernel_layout)?;
        Ok(device)
    }

    fn open_disk(path: &Path, layout: &SlotLayout, writable: bool) -> Result<Device> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| Error::DiskOpen {
                disk: path.to_path_buf(),
                source,
            })?;
        let (table, state) = {
            let mut disk = Disk::new(path.display().to_string(), &mut file);
            disk::load(&mut disk, layout)?
        };
        Ok(Device {
            path: path.to_path_buf(),
            file,
            writable,
            table,
            state,
            kernels: None,
            layout: layout.clone(),
        })
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
        let mut disk = Disk::new(self.path.display().to_string(), &mut self.file);
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
        self.file
            .write_all_at(data, at)
            .map_err(|source| Error::DiskIo {
                op: "write",
                disk: self.path.clone(),
                offset: at,
                len: data.len() as u64,
                source,
            })
    }

    /// Reads `buf.len()` bytes at `offset` inside a region (through the page cache).
    pub fn read_slot(&self, region: impl Into<Region>, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.checked("read", region.into(), offset, buf.len() as u64)?;
        self.file
            .read_exact_at(buf, at)
            .map_err(|source| Error::DiskIo {
                op: "read",
                disk: self.path.clone(),
                offset: at,
                len: buf.len() as u64,
                source,
            })
    }

    /// Makes everything written durable (fdatasync; on a block device also a cache flush).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|source| Error::DiskIo {
            op: "flush",
            disk: self.path.clone(),
            offset: 0,
            len: 0,
            source,
        })
    }

    /// sha256 of the first `len` bytes of `slot`, read bypassing the page cache (with
    /// `O_DIRECT` when `mode` allows and the file system supports it). `progress` gets the
    /// bytes hashed so far.
    pub fn hash_slot_uncached(
        &mut self,
        region: impl Into<Region>,
        len: u64,
        mode: ReadbackMode,
        progress: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], Readback)> {
        let start = self.checked("read back", region.into(), 0, len)?;
        self.sync()?;
        if mode == ReadbackMode::Auto {
            if let Some(sha) = self.hash_direct(start, len, progress)? {
                return Ok((sha, Readback::Direct));
            }
        }
        self.drop_cache(start, len);
        let sha = self.hash_buffered(start, len, progress)?;
        Ok((sha, Readback::Dropped))
    }

    /// `None` when the file system refuses `O_DIRECT`: the caller falls back. A reader thread
    /// reads aligned blocks ahead into [`READ_AHEAD`] recycled buffers while this thread hashes.
    fn hash_direct(
        &self,
        start: u64,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Option<[u8; 32]>> {
        use rustix::fs::{Mode, OFlags};
        let fd = match rustix::fs::open(
            &self.path,
            OFlags::RDONLY | OFlags::DIRECT | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::INVAL => return Ok(None),
            Err(e) => return Err(self.read_err(start, len, std::io::Error::from(e))),
        };
        let file = File::from(fd);
        let end = start + len;
        let mut hasher = Sha256::new();
        let outcome = std::thread::scope(|scope| {
            let (full_tx, full_rx) =
                mpsc::sync_channel::<std::io::Result<(u64, usize, AlignedBuf)>>(READ_AHEAD);
            let (empty_tx, empty_rx) = mpsc::channel::<AlignedBuf>();
            for _ in 0..READ_AHEAD {
                let _ = empty_tx.send(AlignedBuf::new(HASH_BLOCK));
            }
            let file = &file;
            scope.spawn(move || {
                let mut at = start / DIRECT_ALIGN * DIRECT_ALIGN;
                while at < end {
                    let Ok(mut buf) = empty_rx.recv() else { return };
                    let want =
                        (HASH_BLOCK as u64).min((end - at).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN);
                    let want = usize::try_from(want).unwrap_or(HASH_BLOCK);
                    let read = file.read_at(&mut buf.as_mut()[..want], at).and_then(|n| {
                        if n == 0 {
                            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
                        } else {
                            Ok(n)
                        }
                    });
                    let failed = read.is_err();
                    if full_tx.send(read.map(|n| (at, n, buf))).is_err() || failed {
                        return;
                    }
                    // Only whole aligned blocks are read, so `at` stays aligned.
                    at += HASH_BLOCK as u64;
                }
            });
            let mut done = start / DIRECT_ALIGN * DIRECT_ALIGN;
            while done < end {
                let (at, n, buf) = match full_rx.recv() {
                    Ok(Ok(block)) => block,
                    // Alignment the device does not accept: use the fallback.
                    Ok(Err(e))
                        if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                    {
                        return Ok(false)
                    }
                    Ok(Err(e)) => return Err(self.read_err(done, HASH_BLOCK as u64, e)),
                    Err(_) => {
                        return Err(self.read_err(
                            done,
                            0,
                            std::io::Error::other("reader thread stopped"),
                        ))
                    }
                };
                if n < HASH_BLOCK && at + (n as u64) < end {
                    // A short read inside the range (the end of a device or file): stop there.
                    return Err(self.read_err(
                        at + n as u64,
                        0,
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    ));
                }
                let lo = start.saturating_sub(at).min(n as u64) as usize;
                let hi = (end - at).min(n as u64) as usize;
                hasher.update(&buf.as_ref()[lo..hi]);
                done = at + n as u64;
                progress(done.min(end) - start);
                let _ = empty_tx.send(buf);
            }
            Ok(true)
        })?;
        Ok(outcome.then(|| hasher.finalize().into()))
    }

    fn drop_cache(&self, start: u64, len: u64) {
        use std::num::NonZeroU64;
        let advice = rustix::fs::Advice::DontNeed;
        if let Err(e) = rustix::fs::fadvise(&self.file, start, NonZeroU64::new(len), advice) {
            log::warn!("posix_fadvise(DONTNEED) on {}: {e}", self.path.display());
        }
    }

    fn hash_buffered(
        &self,
        start: u64,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<[u8; 32]> {
        let mut buf = vec![0u8; HASH_BLOCK];
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(HASH_BLOCK as u64)).unwrap_or(HASH_BLOCK);
            self.file
                .read_exact_at(&mut buf[..n], start + done)
                .map_err(|e| self.read_err(start + done, n as u64, e))?;
            hasher.update(&buf[..n]);
            done += n as u64;
            progress(done);
        }
        Ok(hasher.finalize().into())
    }

    fn read_err(&self, offset: u64, len: u64, source: std::io::Error) -> Error {
        Error::DiskIo {
            op: "read back",
            disk: self.path.clone(),
            offset,
            len,
            source,
        }
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
