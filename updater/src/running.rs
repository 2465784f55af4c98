//! Which slot is running: the `FlipsideSlot` EFI variable flipside-boot sets (it survives a
//! locked command line under Secure Boot), else the kernel command line (`flipside.slot=a|b`,
//! else `root=PARTUUID=...`), else the mounted root (major:minor of `/` looked up in
//! `/sys/class/block`). The parsers are pure; the paths are parameters so tests fake a system.

use std::path::Path;

use flipside_bootloader_hooks::{efivar, BootState, Slot};

use crate::config::DeviceConfig;
use uuid::Uuid;

use crate::error::{Error, Result};

/// What the kernel command line says about the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineRoot {
    /// `flipside.slot=a|b`.
    Slot(Slot),
    /// `root=PARTUUID=...`.
    PartUuid(Uuid),
}

/// Parses a kernel command line. `flipside.slot` wins over `root=`; the last occurrence of
/// each counts, as the kernel does; a malformed value is an error, not a guess.
pub fn parse_cmdline(text: &str) -> std::result::Result<Option<CmdlineRoot>, String> {
    let mut slot = None;
    let mut partuuid = None;
    for word in text.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix("flipside.slot=") {
            slot = Some(match v {
                "a" | "A" => Slot::A,
                "b" | "B" => Slot::B,
                _ => return Err(format!("flipside.slot={v} is not a or b")),
            });
        } else if let Some(v) = word.strip_prefix("root=") {
            partuuid = match v.strip_prefix("PARTUUID=") {
                Some(u) => Some(Uuid::parse_str(u).map_err(|e| format!("root=PARTUUID={u}: {e}"))?),
                None => None,
            };
        }
    }
    Ok(slot
        .map(CmdlineRoot::Slot)
        .or(partuuid.map(CmdlineRoot::PartUuid)))
}

/// `MAJOR:MINOR` as in `/sys/class/block/*/dev`.
pub fn parse_devnum(text: &str) -> Option<(u32, u32)> {
    let (ma, mi) = text.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// The partition number of the block device `root` (major, minor) if it is a partition of the
/// disk `disk` (major, minor), looked up in a `/sys/class/block`-like directory.
pub fn partition_of(sys_block: &Path, root: (u32, u32), disk: (u32, u32)) -> Option<u32> {
    for entry in std::fs::read_dir(sys_block).ok()?.flatten() {
        let dir = entry.path();
        let dev = std::fs::read_to_string(dir.join("dev")).ok();
        if dev.as_deref().and_then(parse_devnum) != Some(root) {
            continue;
        }
        let number: u32 = std::fs::read_to_string(dir.join("partition"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The partition's directory sits inside its disk's directory.
        let parent = std::fs::canonicalize(&dir).ok()?.parent()?.join("dev");
        let parent_dev = std::fs::read_to_string(parent).ok();
        return (parent_dev.as_deref().and_then(parse_devnum) == Some(disk)).then_some(number);
    }
    None
}

/// The slot flipside-boot chose for this boot, from its volatile EFI variable under `efivars`
/// (efivarfs). `Ok(None)` when there is no such variable (booted another way); a variable that
/// exists but cannot be read or decoded is an error, never a guess.
pub fn firmware_slot(efivars: &Path) -> std::result::Result<Option<Slot>, String> {
    let path = efivars.join(efivar::slot_variable_file_name());
    match std::fs::read(&path) {
        Ok(bytes) => efivar::decode_slot(&bytes)
            .map(Some)
            .ok_or_else(|| format!("{} does not hold slot a or b", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The kernel image flipside-boot saw the firmware refuse this boot (`FlipsideRefused` under
/// `efivars`): `None` when there is none, or when the variable cannot be read or decoded (a
/// warning is logged: the report is informative, the boot already happened).
pub fn firmware_refusal(efivars: &Path) -> Option<efivar::Refusal> {
    let path = efivars.join(efivar::refused_variable_file_name());
    match std::fs::read(&path) {
        Ok(bytes) => {
            let refusal = efivar::decode_refusal(&bytes);
            if refusal.is_none() {
                log::warn!("{} does not hold a refusal; ignored", path.display());
            }
            refusal
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("cannot read {}: {e}", path.display());
            None
        }
    }
}

/// Finds the running slot: the firmware's variable under `device.efivars`, else the kernel
/// command line at `device.cmdline`; when that names neither a slot nor a PARTUUID, the mounted
/// root is looked up (only meaningful when `device.disk` is a block device).
pub fn running_slot(device: &DeviceConfig, state: &BootState) -> Result<Slot> {
    let unknown = |why: String| Error::RunningSlotUnknown { why };
    if let Some(slot) = firmware_slot(&device.efivars).map_err(unknown)? {
        return Ok(slot);
    }
    let (cmdline, disk) = (&device.cmdline, &device.disk);
    let text = std::fs::read_to_string(cmdline)
        .map_err(|e| unknown(format!("cannot read {}: {e}", cmdline.display())))?;
    match parse_cmdline(&text).map_err(unknown)? {
        Some(CmdlineRoot::Slot(slot)) => Ok(slot),
        Some(CmdlineRoot::PartUuid(u)) => state.slot_by_partuuid(u).ok_or_else(|| {
            unknown(format!(
                "root=PARTUUID={} is neither slot's partition on {}",
                u.hyphenated(),
                disk.display()
            ))
        }),
        None => mounted_root(disk, state),
    }
}

fn mounted_root(disk: &Path, state: &BootState) -> Result<Slot> {
    let unknown = |why: String| Error::RunningSlotUnknown { why };
    let root = rustix::fs::stat("/").map_err(|e| unknown(format!("stat /: {e}")))?;
    let disk_stat =
        rustix::fs::stat(disk).map_err(|e| unknown(format!("stat {}: {e}", disk.display())))?;
    let is_block =
        rustix::fs::FileType::from_raw_mode(disk_stat.st_mode) == rustix::fs::FileType::BlockDevice;
    if !is_block {
        return Err(unknown(format!(
            "the kernel command line names no slot and {} is not a block device",
            disk.display()
        )));
    }
    let dev = |d: u64| (rustix::fs::major(d), rustix::fs::minor(d));
    let number = partition_of(
        Path::new("/sys/class/block"),
        dev(root.st_dev),
        dev(disk_stat.st_rdev),
    )
    .ok_or_else(|| {
        unknown(format!(
            "/ is not mounted from a partition of {}",
            disk.display()
        ))
    })?;
    Slot::ALL
        .into_iter()
        .find(|&s| state.slot(s).partition.number == number)
        .ok_or_else(|| unknown(format!("/ is on partition {number}, which is neither slot")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_forms() {
        let u = "60f54bb1-71a2-4964-b21e-2d9317ae4091";
        let parsed = |s: &str| parse_cmdline(s).unwrap();
        assert_eq!(
            parsed("quiet flipside.slot=b ro"),
            Some(CmdlineRoot::Slot(Slot::B))
        );
        assert_eq!(
            parsed(&format!("root=PARTUUID={u} rw")),
            Some(CmdlineRoot::PartUuid(Uuid::parse_str(u).unwrap()))
        );
        assert_eq!(
            parsed(&format!("root=PARTUUID={u} flipside.slot=a")),
            Some(CmdlineRoot::Slot(Slot::A))
        );
        assert_eq!(parsed("root=/dev/vda3 quiet"), None);
        assert_eq!(parsed(""), None);
        assert_eq!(
            parsed("flipside.slot=a flipside.slot=b"),
            Some(CmdlineRoot::Slot(Slot::B))
        );
        assert!(parse_cmdline("flipside.slot=c").is_err());
        assert!(parse_cmdline("root=PARTUUID=zz").is_err());
    }

    #[test]
    fn firmware_variable_first_and_never_guessed() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(firmware_slot(t.path()), Ok(None));
        assert_eq!(firmware_slot(&t.path().join("missing")), Ok(None));
        let file = t.path().join(efivar::slot_variable_file_name());
        for slot in Slot::ALL {
            let mut bytes = efivar::SLOT_VARIABLE_ATTRIBUTES.to_le_bytes().to_vec();
            bytes.extend(efivar::encode_slot(slot));
            std::fs::write(&file, bytes).unwrap();
            assert_eq!(firmware_slot(t.path()), Ok(Some(slot)));
        }
        std::fs::write(&file, b"\x06\0\0\0z\0\0\0").unwrap();
        let err = firmware_slot(t.path()).unwrap_err();
        assert!(err.contains("does not hold slot a or b"), "{err}");
    }

    #[test]
    fn a_refusal_is_read_from_efivarfs() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(firmware_refusal(t.path()), None);
        let file = t.path().join(efivar::refused_variable_file_name());
        let mut bytes = efivar::SLOT_VARIABLE_ATTRIBUTES.to_le_bytes().to_vec();
        bytes.extend(efivar::encode_refusal(Slot::B, "SECURITY_VIOLATION"));
        std::fs::write(&file, bytes).unwrap();
        let r = firmware_refusal(t.path()).unwrap();
        assert_eq!((r.slot, r.status.as_str()), (Slot::B, "SECURITY_VIOLATION"));
        std::fs::write(&file, b"garbage").unwrap();
        assert_eq!(firmware_refusal(t.path()), None);
    }

    #[test]
    fn devnum() {
        assert_eq!(parse_devnum("259:3\n"), Some((259, 3)));
        assert_eq!(parse_devnum("259"), None);
        assert_eq!(parse_devnum("a:b"), None);
    }

    #[test]
    fn partition_lookup_in_a_fake_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("devices/vda");
        let part = disk.join("vda3");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(disk.join("dev"), "254:0\n").unwrap();
        std::fs::write(part.join("dev"), "254:3\n").unwrap();
        std::fs::write(part.join("partition"), "3\n").unwrap();
        let class = t.path().join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&disk, class.join("vda")).unwrap();
        std::os::unix::fs::symlink(&part, class.join("vda3")).unwrap();
        assert_eq!(partition_of(&class, (254, 3), (254, 0)), Some(3));
        // Root on another disk, or the disk itself: not a slot.
        assert_eq!(partition_of(&class, (254, 3), (8, 0)), None);
        assert_eq!(partition_of(&class, (254, 0), (254, 0)), None);
        assert_eq!(partition_of(&class, (1, 1), (254, 0)), None);
    }
}
