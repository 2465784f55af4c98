//! [`BlockDevice`] for `std`: files (image files, loop and whole-disk block devices), in-memory
//! images, and [`PowerCut`], a test device that fails mid-write like a power cut.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::device::{BlockDevice, Disk};
use crate::error::{Error, Result};

fn seek_read<D: Read + Seek>(dev: &mut D, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    dev.seek(SeekFrom::Start(offset))?;
    dev.read_exact(buf)
}

fn seek_write<D: Write + Seek>(dev: &mut D, offset: u64, buf: &[u8]) -> io::Result<()> {
    dev.seek(SeekFrom::Start(offset))?;
    dev.write_all(buf)?;
    dev.flush()
}

impl BlockDevice for File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        seek_read(self, offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        seek_write(self, offset, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        // On a block device this also flushes the page cache of the whole-disk device and
        // sends a cache flush to the drive.
        self.sync_data()
    }
    fn byte_len(&mut self) -> io::Result<u64> {
        // Seeking works for block devices too, where metadata().len() is 0.
        self.seek(SeekFrom::End(0))
    }
}

impl BlockDevice for Cursor<Vec<u8>> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        seek_read(self, offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        seek_write(self, offset, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn byte_len(&mut self) -> io::Result<u64> {
        Ok(self.get_ref().len() as u64)
    }
}

impl Disk<File> {
    /// Opens a disk, loop device or image file; `writable` opens it read-write.
    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        let dev = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::new(path.display().to_string(), dev))
    }
}

/// What a [`PowerCut`] device keeps of the writes since the last flush when the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Every byte written before the cut reached the medium.
    KeepWritten,
    /// Nothing written since the last successful [`BlockDevice::sync`] reached the medium.
    LoseUnsynced,
}

/// A test device that loses power after `budget` bytes have been written: the write that
/// crosses the budget is cut short and fails, as does every later write and flush.
/// [`PowerCut::into_medium`] returns what would be on the disk at power-up.
#[derive(Debug)]
pub struct PowerCut {
    medium: Cursor<Vec<u8>>,
    last_synced: Vec<u8>,
    budget: u64,
    written: u64,
    mode: CutMode,
    cut: bool,
}

impl PowerCut {
    /// Wraps an image; the power goes after `budget` written bytes.
    pub fn new(image: Vec<u8>, budget: u64, mode: CutMode) -> Self {
        Self {
            last_synced: image.clone(),
            medium: Cursor::new(image),
            budget,
            written: 0,
            mode,
            cut: false,
        }
    }

    /// Whether the power went.
    pub fn was_cut(&self) -> bool {
        self.cut
    }

    /// Bytes that reached the medium (before any loss of unsynced data).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The disk contents at the next power-up.
    pub fn into_medium(self) -> Vec<u8> {
        match (self.cut, self.mode) {
            (true, CutMode::LoseUnsynced) => self.last_synced,
            _ => self.medium.into_inner(),
        }
    }

    fn power_lost() -> io::Error {
        io::Error::other("power cut (simulated)")
    }
}

impl BlockDevice for PowerCut {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.medium.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.cut {
            return Err(Self::power_lost());
        }
        if buf.len() as u64 <= self.budget {
            self.budget -= buf.len() as u64;
            self.written += buf.len() as u64;
            return self.medium.write_at(offset, buf);
        }
        // usize::try_from cannot fail: budget < buf.len() here.
        let keep = usize::try_from(self.budget).unwrap_or(0);
        self.medium.write_at(offset, &buf[..keep])?;
        self.written += self.budget;
        self.budget = 0;
        self.cut = true;
        Err(Self::power_lost())
    }

    fn byte_len(&mut self) -> io::Result<u64> {
        self.medium.byte_len()
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.cut {
            return Err(Self::power_lost());
        }
        self.last_synced.clone_from(self.medium.get_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cut_keeps_prefix_or_last_sync() {
        for mode in [CutMode::KeepWritten, CutMode::LoseUnsynced] {
            let mut dev = PowerCut::new(vec![0; 16], 6, mode);
            dev.write_at(0, &[1; 4]).unwrap();
            dev.sync().unwrap();
            assert!(dev.write_at(4, &[2; 4]).is_err());
            assert!(dev.was_cut());
            assert!(dev.sync().is_err());
            let medium = dev.into_medium();
            let expect: &[u8] = match mode {
                CutMode::KeepWritten => &[1, 1, 1, 1, 2, 2, 0, 0],
                CutMode::LoseUnsynced => &[1, 1, 1, 1, 0, 0, 0, 0],
            };
            assert_eq!(&medium[..8], expect);
        }
    }

    #[test]
    fn length_and_offsets() {
        let mut c = Cursor::new(vec![0u8; 4096]);
        assert_eq!(c.byte_len().unwrap(), 4096);
        c.write_at(4090, &[7; 6]).unwrap();
        let mut back = [0u8; 6];
        c.read_at(4090, &mut back).unwrap();
        assert_eq!(back, [7; 6]);
        assert!(
            c.read_at(4092, &mut back).is_err(),
            "a short read is an error"
        );
        let mut f = tempfile::tempfile().unwrap();
        f.write_at(0, &[1; 512]).unwrap();
        assert_eq!(f.byte_len().unwrap(), 512);
    }
}
