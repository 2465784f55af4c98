//! The block device the GPT lives on: anything that reads and writes at byte offsets and can
//! flush. This part is `no_std`: the UEFI boot manager implements [`BlockDevice`] over the
//! firmware's block I/O; with `std`, files, loop and block devices, in-memory images and the
//! power-cut test device implement it (see [`crate::std_device`]).

use alloc::string::{String, ToString};

use crate::error::{Error, Result};

/// What a device reports when an operation fails: [`std::io::Error`] with `std`.
#[cfg(feature = "std")]
pub type DeviceError = std::io::Error;

/// What a device reports when an operation fails (without `std`: the firmware's status, as
/// text).
#[cfg(not(feature = "std"))]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeviceError {
    message: String,
}

#[cfg(not(feature = "std"))]
impl DeviceError {
    /// A failure described by `message` (e.g. the firmware status of a failed block I/O call).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A disk or disk image, addressed by byte offset.
pub trait BlockDevice {
    /// Fills `buf` from `offset`; a short read is an error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> core::result::Result<(), DeviceError>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> core::result::Result<(), DeviceError>;
    /// Makes everything written so far durable (fdatasync for files and block devices, a
    /// block I/O flush in firmware).
    fn sync(&mut self) -> core::result::Result<(), DeviceError>;
    /// Size in bytes.
    fn byte_len(&mut self) -> core::result::Result<u64, DeviceError>;
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> core::result::Result<(), DeviceError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> core::result::Result<(), DeviceError> {
        (**self).write_at(offset, buf)
    }
    fn sync(&mut self) -> core::result::Result<(), DeviceError> {
        (**self).sync()
    }
    fn byte_len(&mut self) -> core::result::Result<u64, DeviceError> {
        (**self).byte_len()
    }
}

/// A block device with the name errors report it by.
#[derive(Debug)]
pub struct Disk<D> {
    name: String,
    dev: D,
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
            disk: self.name.to_string(),
            offset: 0,
            len: 0,
            source,
        })
    }

    /// Reads `buf.len()` bytes at `offset`, e.g. a kernel partition's contents.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.dev.read_at(offset, buf).map_err(|source| Error::Read {
            disk: self.name.clone(),
            offset,
            len: buf.len(),
            source,
        })
    }

    pub(crate) fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        self.dev
            .write_at(offset, buf)
            .map_err(|source| Error::Write {
                disk: self.name.clone(),
                offset,
                len: buf.len(),
                source,
            })
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        self.dev.sync().map_err(|source| Error::Sync {
            disk: self.name.clone(),
            source,
        })
    }
}
