//! A disk in memory, for tests of everything above the device (the install steps): a
//! [`BlockDevice`] over a `Vec<u8>` that never grows, counting its flushes.

use std::io;
use std::ops::Range;
use std::path::Path;

use flipside_bootloader_hooks::BlockDevice;
use sha2::{Digest, Sha256};

use super::{ReadBack, Readback};
use crate::config::ReadbackMode;
use crate::error::{Error, Result};

/// A disk image held in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryDisk {
    bytes: Vec<u8>,
    syncs: u64,
}

impl MemoryDisk {
    pub fn new(bytes: Vec<u8>) -> MemoryDisk {
        MemoryDisk { bytes, syncs: 0 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many times [`BlockDevice::sync`] was called.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    fn span(&self, offset: u64, len: usize) -> io::Result<Range<usize>> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= self.bytes.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

impl BlockDevice for MemoryDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let span = self.span(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes[span]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        // A disk does not grow: writing past its end fails like a block device.
        let span = self.span(offset, buf.len())?;
        self.bytes[span].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.syncs += 1;
        Ok(())
    }

    fn byte_len(&mut self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

impl ReadBack for MemoryDisk {
    fn name(&self) -> &Path {
        Path::new("memory")
    }

    /// Memory has no cache to bypass: this is what `O_DIRECT` reads on a disk.
    fn hash_uncached(
        &mut self,
        range: Range<u64>,
        _mode: ReadbackMode,
        progress: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], Readback)> {
        let len = range.end - range.start;
        let span = usize::try_from(len)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
            .and_then(|n| self.span(range.start, n))
            .map_err(|source| Error::DiskIo {
                op: "read back",
                disk: self.name().to_path_buf(),
                offset: range.start,
                len,
                source,
            })?;
        let sha = Sha256::digest(&self.bytes[span]).into();
        progress(len);
        Ok((sha, Readback::Direct))
    }

    /// Memory is not shared with another thread: read back whole at the end.
    fn uncached(&self, _mode: ReadbackMode) -> Option<Box<dyn super::behind::Uncached>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_writes_and_read_back() {
        let mut d = MemoryDisk::new(vec![0; 8]);
        d.write_at(4, b"abcd").unwrap();
        assert!(d.write_at(5, b"abcd").is_err(), "a disk does not grow");
        let mut buf = [0u8; 2];
        d.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"cd");
        assert!(d.read_at(7, &mut buf).is_err());
        d.sync().unwrap();
        assert_eq!(d.syncs(), 1);
        let (sha, how) = d
            .hash_uncached(4..8, ReadbackMode::Auto, &mut |_| {})
            .unwrap();
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(b"abcd")));
        assert_eq!(how, Readback::Direct);
        assert!(d
            .hash_uncached(4..9, ReadbackMode::Auto, &mut |_| {})
            .is_err());
    }
}
