//! The device-mapper ioctls that open a verity device (Linux): `DM_DEV_CREATE`,
//! `DM_TABLE_LOAD` (read-only, one target), `DM_DEV_SUSPEND` without the suspend flag (resume:
//! the table goes live) and `DM_DEV_REMOVE`, on `/dev/mapper/control`. No udev in an initramfs:
//! devtmpfs names the new device `/dev/dm-<minor>`.
//!
//! The request layout ([`request`]) is pure and unit-tested; only [`Control`] calls `ioctl`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The device-mapper control device.
pub const CONTROL: &str = "/dev/mapper/control";

/// `struct dm_ioctl` (linux/dm-ioctl.h): 312 bytes.
const HEADER: usize = 312;
/// `struct dm_target_spec`: 40 bytes, then the NUL-terminated parameters.
const TARGET_SPEC: usize = 40;
const NAME_LEN: usize = 128;
/// Interface version 4.0.0: every kernel since 2.6 speaks it.
const VERSION: [u32; 3] = [4, 0, 0];
const READONLY_FLAG: u32 = 1 << 0;

/// The commands used here (`DM_*_CMD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Create = 3,
    Remove = 4,
    Resume = 6,
    TableLoad = 9,
}

impl Cmd {
    /// `_IOWR(0xfd, cmd, struct dm_ioctl)`.
    pub fn ioctl_number(self) -> u64 {
        (3u64 << 30) | ((HEADER as u64) << 16) | (0xfd << 8) | self as u64
    }
}

/// A device-mapper failure: the command, the device name and the kernel's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {CONTROL} ({0}); load the dm-mod module first")]
    Control(io::Error),
    #[error("device-mapper {cmd:?} of {name} failed: {source}")]
    Ioctl {
        cmd: Cmd,
        name: String,
        source: io::Error,
    },
    #[error("device-mapper name {0:?} is empty, too long or not ASCII")]
    Name(String),
}

/// One target of a table: `sectors` long from sector 0, `target_type` with `params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub sectors: u64,
    pub target_type: String,
    pub params: String,
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// The request buffer of `cmd` on device `name` (with `target` for a table load). Pure.
pub fn request(name: &str, target: Option<&Target>, readonly: bool) -> Result<Vec<u8>, Error> {
    if name.is_empty() || name.len() >= NAME_LEN || !name.is_ascii() || name.contains('/') {
        return Err(Error::Name(name.into()));
    }
    let mut body = Vec::new();
    if let Some(t) = target {
        let mut spec = vec![0u8; TARGET_SPEC];
        spec[0..8].copy_from_slice(&0u64.to_ne_bytes());
        spec[8..16].copy_from_slice(&t.sectors.to_ne_bytes());
        let ty = t.target_type.as_bytes();
        spec[24..24 + ty.len().min(15)].copy_from_slice(&ty[..ty.len().min(15)]);
        body.extend_from_slice(&spec);
        body.extend_from_slice(t.params.as_bytes());
        body.push(0);
        body.resize(body.len().div_ceil(8) * 8, 0);
    }
    // Room for the kernel's answer (it writes status data after the header for some commands).
    let size = (HEADER + body.len()).max(16 * 1024);
    let mut buf = vec![0u8; size];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(&mut buf, 12, size as u32); // data_size
    put_u32(&mut buf, 16, HEADER as u32); // data_start
    put_u32(&mut buf, 20, u32::from(target.is_some())); // target_count
    put_u32(&mut buf, 28, if readonly { READONLY_FLAG } else { 0 }); // flags
    buf[48..48 + name.len()].copy_from_slice(name.as_bytes());
    buf[HEADER..HEADER + body.len()].copy_from_slice(&body);
    Ok(buf)
}

/// The `dev` field of an answer as (major, minor) (the kernel's `new_encode_dev`). Pure.
pub fn decode_dev(buf: &[u8]) -> (u32, u32) {
    let dev = u64::from_ne_bytes(buf[40..48].try_into().unwrap_or_default());
    let major = ((dev & 0xfff00) >> 8) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
    (major, minor)
}

/// The open control device.
pub struct Control {
    file: File,
}

impl Control {
    pub fn open() -> Result<Self, Error> {
        Self::open_at(Path::new(CONTROL))
    }

    pub fn open_at(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::Control)?;
        Ok(Self { file })
    }

    fn call(&self, cmd: Cmd, name: &str, buf: &mut [u8]) -> Result<(), Error> {
        // SAFETY: buf is at least HEADER bytes and its data_size field says how long it is;
        // the kernel reads and writes within that length only.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                cmd.ioctl_number() as _,
                buf.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(Error::Ioctl {
                cmd,
                name: name.into(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Creates device `name` with the read-only `target` live, and returns its node
    /// (`/dev/dm-<minor>`). On a failure after the create, the device is removed again.
    pub fn create_readonly(&self, name: &str, target: &Target) -> Result<PathBuf, Error> {
        let mut buf = request(name, None, false)?;
        self.call(Cmd::Create, name, &mut buf)?;
        let (_, minor) = decode_dev(&buf);
        let live = (|| {
            let mut buf = request(name, Some(target), true)?;
            self.call(Cmd::TableLoad, name, &mut buf)?;
            let mut buf = request(name, None, false)?;
            self.call(Cmd::Resume, name, &mut buf)
        })();
        if let Err(e) = live {
            let _ = self.remove(name);
            return Err(e);
        }
        Ok(PathBuf::from(format!("/dev/dm-{minor}")))
    }

    /// Removes device `name`.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut buf = request(name, None, false)?;
        self.call(Cmd::Remove, name, &mut buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // DM_DEV_CREATE = 0xc138fd03, DM_TABLE_LOAD = 0xc138fd09 (from strace of dmsetup).
        assert_eq!(Cmd::Create.ioctl_number(), 0xc138_fd03);
        assert_eq!(Cmd::Remove.ioctl_number(), 0xc138_fd04);
        assert_eq!(Cmd::Resume.ioctl_number(), 0xc138_fd06);
        assert_eq!(Cmd::TableLoad.ioctl_number(), 0xc138_fd09);
    }

    #[test]
    fn a_table_load_request_carries_one_target_after_the_header() {
        let t = Target {
            sectors: 80,
            target_type: "verity".into(),
            params: "1 /dev/vda2 /dev/vda2 4096 4096 10 10 sha256 ab cd".into(),
        };
        let buf = request("root", Some(&t), true).unwrap();
        assert_eq!(
            [u32_at(&buf, 0), u32_at(&buf, 4), u32_at(&buf, 8)],
            [4, 0, 0]
        );
        assert_eq!(u32_at(&buf, 12) as usize, buf.len());
        assert_eq!(u32_at(&buf, 16), 312);
        assert_eq!(u32_at(&buf, 20), 1, "one target");
        assert_eq!(u32_at(&buf, 28), READONLY_FLAG);
        assert_eq!(&buf[48..53], b"root\0");
        let spec = &buf[312..];
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 80);
        assert_eq!(&spec[24..31], b"verity\0");
        let params = &spec[40..40 + t.params.len() + 1];
        assert_eq!(&params[..t.params.len()], t.params.as_bytes());
        assert_eq!(params[t.params.len()], 0);
    }

    #[test]
    fn names_are_checked_and_devs_decoded() {
        assert!(matches!(request("", None, false), Err(Error::Name(_))));
        assert!(matches!(request("a/b", None, false), Err(Error::Name(_))));
        assert!(matches!(
            request(&"x".repeat(128), None, false),
            Err(Error::Name(_))
        ));
        let mut buf = request("root", None, false).unwrap();
        assert_eq!(u32_at(&buf, 20), 0);
        // major 254, minor 3 and minor 300 in new_encode_dev form.
        buf[40..48].copy_from_slice(&((254u64 << 8) | 3).to_ne_bytes());
        assert_eq!(decode_dev(&buf), (254, 3));
        let enc = (300u64 & 0xff) | (254 << 8) | ((300u64 & !0xff) << 12);
        buf[40..48].copy_from_slice(&enc.to_ne_bytes());
        assert_eq!(decode_dev(&buf), (254, 300));
    }
}
