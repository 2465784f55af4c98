//! The real disk: an image file, a loop device or a whole-disk block device, opened once by
//! path. Reads and writes are positioned (`pread`/`pwrite`, no seek), and
//! [`ReadBack::hash_uncached`] bypasses the page cache: `O_DIRECT` where the file system
//! supports it, else fsync + `posix_fadvise(DONTNEED)` and a buffered read.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use flipside_bootloader_hooks::BlockDevice;
use sha2::{Digest, Sha256};

use super::behind::Uncached;
use super::{ReadBack, Readback};
use crate::config::ReadbackMode;
use crate::error::{Error, Result};

/// Alignment used for `O_DIRECT` reads (covers 512- and 4096-byte logical sectors).
const DIRECT_ALIGN: u64 = 4096;
/// Bytes per read when hashing a slot back.
const HASH_BLOCK: usize = 1 << 20;
/// Blocks read ahead of the hasher.
const READ_AHEAD: usize = 3;

/// A disk opened by path.
#[derive(Debug)]
pub struct DiskFile {
    path: PathBuf,
    file: File,
}

impl DiskFile {
    /// Opens `path`, read-write when `writable`.
    pub fn open(path: &Path, writable: bool) -> Result<DiskFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| Error::DiskOpen {
                disk: path.to_path_buf(),
                source,
            })?;
        Ok(DiskFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn read_err(&self, offset: u64, len: u64, source: io::Error) -> Error {
        Error::DiskIo {
            op: "read back",
            disk: self.path.clone(),
            offset,
            len,
            source,
        }
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
            Err(e) => return Err(self.read_err(start, len, io::Error::from(e))),
        };
        let file = File::from(fd);
        let end = start + len;
        let mut hasher = Sha256::new();
        let outcome = std::thread::scope(|scope| {
            let (full_tx, full_rx) =
                mpsc::sync_channel::<io::Result<(u64, usize, AlignedBuf)>>(READ_AHEAD);
            let (empty_tx, empty_rx) = mpsc::channel::<AlignedBuf>();
            for _ in 0..READ_AHEAD {
                let _ = empty_tx.send(AlignedBuf::new(HASH_BLOCK));
            }
            let file = &file;
            scope.spawn(move || read_ahead(file, start..end, &full_tx, &empty_rx));
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
                            io::Error::other("reader thread stopped"),
                        ))
                    }
                };
                if n < HASH_BLOCK && at + (n as u64) < end {
                    // A short read inside the range (the end of a device or file): stop there.
                    return Err(self.read_err(
                        at + n as u64,
                        0,
                        io::Error::from(io::ErrorKind::UnexpectedEof),
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
}

/// The reader of [`DiskFile::hash_direct`]: whole aligned blocks covering `range`, in order,
/// each read into a recycled buffer from `empty` and sent to `full`, until the end, an error
/// (sent too), or the hasher hangs up.
fn read_ahead(
    file: &File,
    range: Range<u64>,
    full: &mpsc::SyncSender<io::Result<(u64, usize, AlignedBuf)>>,
    empty: &mpsc::Receiver<AlignedBuf>,
) {
    let mut at = range.start / DIRECT_ALIGN * DIRECT_ALIGN;
    while at < range.end {
        let Ok(mut buf) = empty.recv() else { return };
        let want = (HASH_BLOCK as u64).min((range.end - at).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN);
        let want = usize::try_from(want).unwrap_or(HASH_BLOCK);
        let read = file.read_at(&mut buf.as_mut()[..want], at).and_then(|n| {
            if n == 0 {
                Err(io::Error::from(io::ErrorKind::UnexpectedEof))
            } else {
                Ok(n)
            }
        });
        let failed = read.is_err();
        if full.send(read.map(|n| (at, n, buf))).is_err() || failed {
            return;
        }
        // Only whole aligned blocks are read, so `at` stays aligned.
        at += HASH_BLOCK as u64;
    }
}

impl BlockDevice for DiskFile {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        // On a block device this also sends a cache flush to the drive.
        self.file.sync_data()
    }

    fn byte_len(&mut self) -> io::Result<u64> {
        BlockDevice::byte_len(&mut self.file)
    }
}

impl ReadBack for DiskFile {
    fn name(&self) -> &Path {
        &self.path
    }

    fn hash_uncached(
        &mut self,
        range: Range<u64>,
        mode: ReadbackMode,
        progress: &mut dyn FnMut(u64),
    ) -> Result<([u8; 32], Readback)> {
        let (start, len) = (range.start, range.end - range.start);
        if mode == ReadbackMode::Auto {
            if let Some(sha) = self.hash_direct(start, len, progress)? {
                return Ok((sha, Readback::Direct));
            }
        }
        self.drop_cache(start, len);
        let sha = self.hash_buffered(start, len, progress)?;
        Ok((sha, Readback::Dropped))
    }

    fn uncached(&self, mode: ReadbackMode) -> Option<Box<dyn Uncached>> {
        let direct = match mode {
            ReadbackMode::Auto => open_direct(&self.path).ok().flatten(),
            ReadbackMode::DropCache => None,
        };
        let buffered = self.file.try_clone().ok()?;
        Some(Box::new(UncachedFile {
            path: self.path.clone(),
            direct,
            buffered,
        }))
    }
}

/// `path` opened with `O_DIRECT`; `None` where the file system refuses it.
fn open_direct(path: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECT | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(e) if e == rustix::io::Errno::INVAL => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The read-behind's reader: `O_DIRECT` while the medium accepts it, else the page cache
/// dropped for each block, then a buffered read.
struct UncachedFile {
    path: PathBuf,
    direct: Option<File>,
    buffered: File,
}

impl Uncached for UncachedFile {
    fn readback(&self) -> Readback {
        match self.direct {
            Some(_) => Readback::Direct,
            None => Readback::Dropped,
        }
    }

    fn read_block(&mut self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(direct) = &self.direct {
            match read_upto(direct, at, buf) {
                // Alignment the device does not accept: the fallback from now on.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    log::warn!(
                        "O_DIRECT reads of {} fail ({e}): dropping the page cache instead",
                        self.path.display()
                    );
                    self.direct = None;
                }
                other => return other,
            }
        }
        let advice = rustix::fs::Advice::DontNeed;
        let len = std::num::NonZeroU64::new(buf.len() as u64);
        rustix::fs::fadvise(&self.buffered, at, len, advice).map_err(io::Error::from)?;
        read_upto(&self.buffered, at, buf)
    }
}

/// Reads up to `buf.len()` bytes at `at`, fewer only at the end of the file.
fn read_upto(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A heap buffer whose usable part starts on a [`DIRECT_ALIGN`] boundary, as `O_DIRECT` needs.
pub(super) struct AlignedBuf {
    raw: Vec<u8>,
    shift: usize,
    len: usize,
}

impl AlignedBuf {
    pub(super) fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + DIRECT_ALIGN as usize];
        let shift = raw.as_ptr().align_offset(DIRECT_ALIGN as usize);
        AlignedBuf { raw, shift, len }
    }

    pub(super) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.shift..self.shift + self.len]
    }

    fn as_ref(&self) -> &[u8] {
        &self.raw[self.shift..self.shift + self.len]
    }
}
