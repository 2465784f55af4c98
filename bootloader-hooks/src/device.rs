//! The block device the GPT lives on: anything seekable and writable that can flush. Files,
//! loop devices and whole-disk block devices all work through [`std::fs::File`]; tests use
//! in-memory images and [`PowerCut`], which fails mid-write like a power cut.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// A disk or disk image.
pub trait BlockDevice: Read + Write + Seek {
    /// Makes everything written so far durable (fdatasync for files and block devices).
    fn sync(&mut self) -> io::Result<()>;

    /// Size in bytes, by seeking to the end (works for block devices too).
    fn byte_len(&mut self) -> io::Result<u64> {
        self.seek(SeekFrom::End(0))
    }
}

impl BlockDevice for File {
    fn sync(&mut self) -> io::Result<()> {
        // On a block device this also flushes the page cache of the whole-disk device and
        // sends a cache flush to the drive.
        self.sync_data()
    }
}

impl BlockDevice for Cursor<Vec<u8>> {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
}

/// A block device with the name errors report it by.
#[derive(Debug)]
pub struct Disk<D> {
    name: String,
    dev: D,
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

impl<D: BlockDevice> Disk<D> {
    /// Wraps a device under a name (a path, or a test's label).
    pub fn new(name: impl Into<String>, dev: D) -> Self {
        Self {
            name: name.into(),
            dev,
        }
    }

    /// The name errors use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device, e.g. to inspect a test image afterwards.
    pub fn into_inner(self) -> D {
        self.dev
    }

    pub(crate) fn len(&mut self) -> Result<u64> {
        self.dev.byte_len().map_err(|source| Error::Read {
            disk: self.name.clone(),
            offset: 0,
            len: 0,
            source,
        })
    }

    pub(crate) fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let res = self
            .dev
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.dev.read_exact(buf));
        res.map_err(|source| Error::Read {
            disk: self.name.clone(),
            offset,
            len: buf.len(),
            source,
        })
    }

    pub(crate) fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        let res = self
            .dev
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.dev.write_all(buf));
        res.map_err(|source| Error::Write {
            disk: self.name.clone(),
            offset,
            len: buf.len(),
            source,
        })
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        let res = self.dev.flush().and_then(|()| self.dev.sync());
        res.map_err(|source| Error::Sync {
            disk: self.name.clone(),
            source,
        })
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

impl Read for PowerCut {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.medium.read(buf)
    }
}

impl Write for PowerCut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut {
            return Err(Self::power_lost());
        }
        if buf.len() as u64 <= self.budget {
            self.budget -= buf.len() as u64;
            self.written += buf.len() as u64;
            return self.medium.write(buf);
        }
        // usize::try_from cannot fail: budget < buf.len() here.
        let keep = usize::try_from(self.budget).unwrap_or(0);
        self.medium.write_all(&buf[..keep])?;
        self.written += self.budget;
        self.budget = 0;
        self.cut = true;
        Err(Self::power_lost())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PowerCut {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.medium.seek(pos)
    }
}

impl BlockDevice for PowerCut {
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
            dev.write_all(&[1; 4]).unwrap();
            dev.sync().unwrap();
            assert!(dev.write_all(&[2; 4]).is_err());
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
    fn length_by_seeking_to_end() {
        let mut c = Cursor::new(vec![0u8; 4096]);
        assert_eq!(c.byte_len().unwrap(), 4096);
    }
}
