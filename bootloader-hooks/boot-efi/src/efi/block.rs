//! The whole disk the ESP is on, as a `BlockDevice` over the firmware's block I/O: the GPT and
//! the slot partitions are read (and the table written) through it.
//!
//! The disk is found from the loaded image's device (the ESP partition): of all handles with
//! block I/O, the one that is not a logical partition and whose device path is a proper prefix
//! of the ESP's (e.g. `PciRoot(0)/Pci(3,0)` of `PciRoot(0)/Pci(3,0)/HD(1,GPT,...)`).
//! Protocols are opened non-exclusively (GetProtocol), like other boot managers do, so the
//! partition and file system drivers stay connected.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use flipside_bootloader_hooks::{BlockDevice, DeviceError};
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol};
use uefi::proto::device_path::text::{AllowShortcuts, DisplayOnly};
use uefi::proto::device_path::DevicePath;
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::block::BlockIO;
use uefi::proto::ProtocolPointer;
use uefi::Handle;

/// The end-of-device-path node that closes every device path.
const END_ENTIRE: [u8; 4] = [0x7f, 0xff, 0x04, 0x00];
/// Bytes moved per block I/O call (a multiple of any block size).
const CHUNK: usize = 1 << 20;

/// Block I/O of a whole disk, addressed by byte offset.
pub struct FirmwareDisk {
    io: ScopedProtocol<BlockIO>,
    media_id: u32,
    block_size: u64,
    len: u64,
    /// Bounce buffer of CHUNK bytes at `align` alignment (block I/O may require it).
    bounce: Vec<u8>,
    offset: usize,
}

fn open<P: ProtocolPointer + ?Sized>(handle: Handle) -> uefi::Result<ScopedProtocol<P>> {
    // SAFETY: GetProtocol does not take ownership; the handles used here (the boot disk and
    // partition) stay installed while boot services run.
    unsafe {
        boot::open_protocol::<P>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
}

/// The disk flipside-boot was loaded from, with its device path as text for messages.
pub fn boot_disk() -> Result<(String, FirmwareDisk), String> {
    let esp = {
        let loaded = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
            .map_err(|e| format!("no loaded image protocol: {:?}", e.status()))?;
        loaded
            .device()
            .ok_or("the firmware did not say which device flipside-boot came from")?
    };
    let esp_path = open::<DevicePath>(esp)
        .map_err(|e| format!("the ESP has no device path: {:?}", e.status()))?;
    let esp_bytes = esp_path.as_bytes().to_vec();
    let handles = boot::find_handles::<BlockIO>()
        .map_err(|e| format!("no block devices: {:?}", e.status()))?;
    for handle in handles {
        let Ok(path) = open::<DevicePath>(handle) else {
            continue;
        };
        let Some(prefix) = path.as_bytes().strip_suffix(&END_ENTIRE) else {
            continue;
        };
        if prefix.is_empty()
            || prefix.len() + END_ENTIRE.len() >= esp_bytes.len()
            || !esp_bytes.starts_with(prefix)
        {
            continue;
        }
        let Ok(io) = open::<BlockIO>(handle) else {
            continue;
        };
        let media = io.media();
        if media.is_logical_partition() || !media.is_media_present() {
            continue;
        }
        let name = path
            .to_string16(DisplayOnly(false), AllowShortcuts(false))
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "the boot disk".into());
        return Ok((name, FirmwareDisk::new(io)?));
    }
    Err("no whole-disk block device holds the ESP".into())
}

impl FirmwareDisk {
    fn new(io: ScopedProtocol<BlockIO>) -> Result<Self, String> {
        let media = io.media();
        let block_size = u64::from(media.block_size());
        if block_size == 0 || !(CHUNK as u64).is_multiple_of(block_size) {
            return Err(format!("unsupported block size {block_size}"));
        }
        let len = media
            .last_block()
            .checked_add(1)
            .and_then(|blocks| blocks.checked_mul(block_size))
            .ok_or("the disk size overflows")?;
        let align = usize::try_from(media.io_align()).unwrap_or(1).max(1);
        let bounce = vec![0u8; CHUNK + align];
        let offset = bounce.as_ptr().align_offset(align);
        if offset > align {
            return Err(format!("cannot align a buffer to {align} bytes"));
        }
        let media_id = media.media_id();
        Ok(Self {
            io,
            media_id,
            block_size,
            len,
            bounce,
            offset,
        })
    }

    fn bounce(&mut self, len: usize) -> &mut [u8] {
        &mut self.bounce[self.offset..self.offset + len]
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), DeviceError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(DeviceError::new(format!(
                "{len} bytes at offset {offset} are past the end of the disk ({} bytes)",
                self.len
            ))),
        }
    }

    /// Reads whole blocks from `lba` into the bounce buffer's first `len` bytes.
    fn read_blocks(&mut self, lba: u64, len: usize) -> Result<(), DeviceError> {
        let media_id = self.media_id;
        let (start, end) = (self.offset, self.offset + len);
        let buf = &mut self.bounce[start..end];
        self.io
            .read_blocks(media_id, lba, buf)
            .map_err(|e| DeviceError::new(format!("block I/O read at LBA {lba}: {:?}", e.status())))
    }

    fn write_blocks(&mut self, lba: u64, len: usize) -> Result<(), DeviceError> {
        let media_id = self.media_id;
        let (start, end) = (self.offset, self.offset + len);
        let buf = &self.bounce[start..end];
        self.io.write_blocks(media_id, lba, buf).map_err(|e| {
            DeviceError::new(format!("block I/O write at LBA {lba}: {:?}", e.status()))
        })
    }

    /// The block-aligned span that covers `pos..pos+want` (capped at CHUNK): first LBA, offset
    /// of `pos` inside it, its length in bytes, and how many of the wanted bytes it holds.
    fn span(&self, pos: u64, want: usize) -> (u64, usize, usize, usize) {
        let bs = self.block_size;
        let lba = pos / bs;
        let skip = (pos % bs) as usize;
        let covered = (skip + want).min(CHUNK);
        let span = covered.div_ceil(bs as usize) * bs as usize;
        let span = span.min(CHUNK);
        let n = (span - skip).min(want);
        (lba, skip, span, n)
    }
}

impl BlockDevice for FirmwareDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check(offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let (lba, skip, span, n) = self.span(offset + done as u64, buf.len() - done);
            self.read_blocks(lba, span)?;
            buf[done..done + n].copy_from_slice(&self.bounce(span)[skip..skip + n]);
            done += n;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.check(offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let (lba, skip, span, n) = self.span(offset + done as u64, buf.len() - done);
            if skip != 0 || n != span {
                // A partial block: read it first so that the bytes around `buf` survive.
                self.read_blocks(lba, span)?;
            }
            self.bounce(span)[skip..skip + n].copy_from_slice(&buf[done..done + n]);
            self.write_blocks(lba, span)?;
            done += n;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), DeviceError> {
        self.io
            .flush_blocks()
            .map_err(|e| DeviceError::new(format!("block I/O flush: {:?}", e.status())))
    }

    fn byte_len(&mut self) -> Result<u64, DeviceError> {
        Ok(self.len)
    }
}
