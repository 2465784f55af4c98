//! The virtual appliance's disk: a GPT image file made by `sgdisk` with partitions 1 `root-a`
//! and 2 `root-b` (ChromeOS kernel type, so `cgpt` shows their boot bits) and 3 `data` (ext4,
//! label `data`, made by `mkfs.ext4`). Slot images are written at their partition's offset and
//! boot state is set with the bootloader-hooks library (or with `cgpt`, to check interop).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flipside_bootloader_hooks::disk::{self as hooks_disk, SlotLayout};
use flipside_bootloader_hooks::{
    BlockDevice, BootAttrs, BootState, CopyKind, DeviceError, Disk, GptTable, PartitionSelector,
    Slot,
};

use crate::error::{Error, Result};
use crate::tool;

/// GPT type of the slot partitions: ChromeOS kernel, whose attribute bits cgpt reads as
/// priority, tries and successful.
pub const SLOT_TYPE: &str = "FE3A2A5D-4F32-41A7-B725-ACCC3285A309";
/// GPT type of the data partition: Linux filesystem.
pub const DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Label (GPT name and ext4 label) of the data partition.
pub const DATA_LABEL: &str = "data";

const MIB: u64 = 1 << 20;
/// Fixed ext4 UUID and hash seed: the same inputs give the same data partition.
const DATA_UUID: &str = "5f1d5e00-0000-4000-8000-00000000da7a";

/// Partition sizes of a test disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLayout {
    /// Bytes per slot partition (root-a, root-b).
    pub slot_size: u64,
    /// Bytes of the data partition.
    pub data_size: u64,
}

impl Default for DiskLayout {
    /// 64 MiB slots (the example appliance's `slot_size`), 16 MiB of data.
    fn default() -> Self {
        Self {
            slot_size: 64 * MIB,
            data_size: 16 * MIB,
        }
    }
}

/// A partition after the data partition (the ESP and the kernel partitions of a UEFI disk,
/// see [`crate::uefi`]), numbered 4, 5, ... in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraPartition {
    /// GPT partition name.
    pub label: String,
    /// GPT type GUID.
    pub type_guid: &'static str,
    /// Bytes (a multiple of 1 MiB).
    pub size: u64,
}

/// The `sgdisk` arguments that partition a disk with `layout` and `extra` partitions. Pure.
pub fn sgdisk_args_with(layout: &DiskLayout, extra: &[ExtraPartition]) -> Vec<String> {
    let mut args = sgdisk_args(layout);
    for (i, p) in extra.iter().enumerate() {
        let n = i + 4;
        args.extend([
            "-n".to_string(),
            format!("{n}:0:+{}K", p.size / 1024),
            "-t".to_string(),
            format!("{n}:{}", p.type_guid),
            "-c".to_string(),
            format!("{n}:{}", p.label),
        ]);
    }
    args
}

/// The `sgdisk` arguments that partition a disk with `layout`. Pure.
pub fn sgdisk_args(layout: &DiskLayout) -> Vec<String> {
    let kib = |b: u64| format!("+{}K", b / 1024);
    [
        "-a",
        "2048",
        "-o",
        "-n",
        &format!("1:2048:{}", kib(layout.slot_size)),
        "-t",
        &format!("1:{SLOT_TYPE}"),
        "-c",
        "1:root-a",
        "-n",
        &format!("2:0:{}", kib(layout.slot_size)),
        "-t",
        &format!("2:{SLOT_TYPE}"),
        "-c",
        "2:root-b",
        "-n",
        &format!("3:0:{}", kib(layout.data_size)),
        "-t",
        &format!("3:{DATA_TYPE}"),
        "-c",
        &format!("3:{DATA_LABEL}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Total bytes of a disk with `layout`: 1 MiB before the first partition, 1 MiB at the end
/// for the backup GPT.
pub fn disk_size(layout: &DiskLayout) -> u64 {
    MIB + 2 * layout.slot_size + layout.data_size + MIB
}

/// A test disk image file.
#[derive(Clone, Debug)]
pub struct TestDisk {
    path: PathBuf,
}

impl TestDisk {
    /// Creates a sparse disk image at `path`: GPT by sgdisk, an empty ext4 data partition
    /// holding the files of `data_dir` when given. Both slots start with P=0, T=0, S=0.
    pub fn create(path: &Path, layout: &DiskLayout, data_dir: Option<&Path>) -> Result<Self> {
        Self::create_with(path, layout, data_dir, &[])
    }

    /// [`TestDisk::create`] with `extra` partitions after the data partition (left empty).
    pub fn create_with(
        path: &Path,
        layout: &DiskLayout,
        data_dir: Option<&Path>,
        extra: &[ExtraPartition],
    ) -> Result<Self> {
        let file = File::create(path).map_err(Error::io("create", path))?;
        let extra_size: u64 = extra.iter().map(|p| p.size).sum();
        file.set_len(disk_size(layout) + extra_size)
            .map_err(Error::io("size", path))?;
        drop(file);
        tool::run(
            Command::new("sgdisk")
                .args(sgdisk_args_with(layout, extra))
                .arg(path),
            "gdisk",
        )?;
        let disk = Self {
            path: path.to_path_buf(),
        };
        disk.format_data(layout, data_dir)?;
        Ok(disk)
    }

    /// An existing disk image.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn format_data(&self, layout: &DiskLayout, data_dir: Option<&Path>) -> Result<()> {
        let fs_image = self.path.with_extension("data.ext4");
        let mut cmd = Command::new("mkfs.ext4");
        cmd.args(["-q", "-F", "-L", DATA_LABEL, "-U", DATA_UUID])
            .arg("-E")
            .arg(format!("hash_seed={DATA_UUID},root_owner=0:0"))
            .env("E2FSPROGS_FAKE_TIME", "1");
        if let Some(dir) = data_dir {
            cmd.arg("-d").arg(dir);
        }
        cmd.arg(&fs_image)
            .arg(format!("{}k", layout.data_size / 1024));
        tool::run(&mut cmd, "e2fsprogs")?;
        let (start, len) = self.partition_range(&PartitionSelector::Label(DATA_LABEL.into()))?;
        let res = self.write_at(&fs_image, start, len, 3);
        let _ = fs::remove_file(&fs_image);
        res
    }

    fn table(&self, writable: bool) -> Result<(Disk<File>, GptTable)> {
        let gpt = |source| Error::Gpt {
            disk: self.path.clone(),
            source,
        };
        let mut disk = Disk::open(&self.path, writable).map_err(gpt)?;
        let table = GptTable::read(&mut disk).map_err(gpt)?;
        Ok((disk, table))
    }

    /// Byte offset and length of a partition.
    fn partition_range(&self, selector: &PartitionSelector) -> Result<(u64, u64)> {
        let (_, table) = self.table(false)?;
        let entry = table.find(selector).map_err(|source| Error::Gpt {
            disk: self.path.clone(),
            source,
        })?;
        let sector = table.sector_size();
        Ok((
            entry.first_lba * sector,
            (entry.last_lba + 1 - entry.first_lba) * sector,
        ))
    }

    /// Writes `image` into the partition named `label` (and syncs it); refuses an image larger
    /// than the partition. Boot state is not touched.
    pub fn write_partition(&self, label: &str, image: &Path) -> Result<()> {
        let selector = PartitionSelector::Label(label.into());
        let (start, len) = self.partition_range(&selector)?;
        let (_, table) = self.table(false)?;
        let number = table
            .find(&selector)
            .map_err(|source| Error::Gpt {
                disk: self.path.clone(),
                source,
            })?
            .number;
        self.write_at(image, start, len, number)
    }

    /// The partition number of a slot.
    pub fn slot_partition(&self, slot: Slot) -> Result<u32> {
        Ok(self.boot_state()?.slot(slot).partition.number)
    }

    /// Writes a filesystem image into `slot`'s partition (and syncs it). Refuses an image
    /// larger than the partition. Boot state is not touched.
    pub fn write_slot(&self, slot: Slot, image: &Path) -> Result<()> {
        let layout = SlotLayout::default();
        let (start, len) = self.partition_range(layout.selector(slot))?;
        self.write_at(image, start, len, self.slot_partition(slot)?)
    }

    /// Flips every bit of the byte at `offset` in `slot`'s partition (and syncs it), as an
    /// attacker with the disk in hand would change a committed root. Returns the old byte.
    pub fn flip_slot_byte(&self, slot: Slot, offset: u64) -> Result<u8> {
        let layout = SlotLayout::default();
        let (start, len) = self.partition_range(layout.selector(slot))?;
        assert!(
            offset < len,
            "offset {offset} is outside the slot ({len} bytes)"
        );
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(Error::io("open", &self.path))?;
        let mut byte = [0u8; 1];
        f.seek(SeekFrom::Start(start + offset))
            .and_then(|_| f.read_exact(&mut byte))
            .and_then(|_| f.seek(SeekFrom::Start(start + offset)))
            .and_then(|_| f.write_all(&[!byte[0]]))
            .and_then(|_| f.sync_data())
            .map_err(Error::io("flip a byte in", &self.path))?;
        Ok(byte[0])
    }

    fn write_at(&self, image: &Path, start: u64, len: u64, partition: u32) -> Result<()> {
        let size = fs::metadata(image).map_err(Error::io("stat", image))?.len();
        if size > len {
            return Err(Error::ImageTooLarge {
                image: image.to_path_buf(),
                size,
                partition,
                slot_size: len,
            });
        }
        let mut src = File::open(image).map_err(Error::io("open", image))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(Error::io("open", &self.path))?;
        dst.seek(SeekFrom::Start(start))
            .and_then(|_| std::io::copy(&mut src, &mut dst))
            .and_then(|_| dst.flush())
            .and_then(|_| dst.sync_data())
            .map_err(Error::io("write an image into", &self.path))?;
        Ok(())
    }

    /// Both slots' boot state, read with the bootloader-hooks library.
    pub fn boot_state(&self) -> Result<BootState> {
        let (mut disk, _) = self.table(false)?;
        let (_, state) =
            hooks_disk::load(&mut disk, &SlotLayout::default()).map_err(|source| Error::Gpt {
                disk: self.path.clone(),
                source,
            })?;
        Ok(state)
    }

    /// What each GPT copy says on its own: each is read with the other's header sector seen as
    /// zeros (nothing is written), so a stale or torn copy shows as it is.
    pub fn table_copies(&self) -> Result<TableCopies> {
        let (_, table) = self.table(false)?;
        let header = table.header();
        let backup_lba = match table.source() {
            CopyKind::Primary => header.alternate_lba,
            CopyKind::Backup => header.my_lba,
        };
        let sector = table.sector_size();
        let copy = |hide: u64| -> Result<CopyBits> {
            let file = File::open(&self.path).map_err(Error::io("open", &self.path))?;
            let dev = HiddenSector {
                file,
                hidden: hide * sector..(hide + 1) * sector,
            };
            let mut disk = Disk::new(self.path.display().to_string(), dev);
            Ok(hooks_disk::load(&mut disk, &SlotLayout::default())
                .map(|(_, state)| (bits_of(&state, Slot::A), bits_of(&state, Slot::B))))
        };
        Ok(TableCopies {
            agree: table.health().copies_agree,
            primary: copy(backup_lba)?,
            backup: copy(1)?,
        })
    }

    /// `(priority, tries, successful)` of `slot`, read with the bootloader-hooks library.
    pub fn bits(&self, slot: Slot) -> Result<(u8, u8, bool)> {
        let a = self.boot_state()?.attrs(slot);
        Ok((a.priority(), a.tries(), a.successful()))
    }

    /// Asserts that the library and cgpt agree on both slots' bits and that they are `a` and
    /// `b`; `when` names the moment in the failure message.
    pub fn assert_bits(&self, a: (u8, u8, bool), b: (u8, u8, bool), when: &str) -> Result<()> {
        assert_eq!(self.bits(Slot::A)?, a, "{when}: slot a (library)");
        assert_eq!(self.bits(Slot::B)?, b, "{when}: slot b (library)");
        assert_eq!(self.cgpt_slot(Slot::A)?, a, "{when}: slot a (cgpt)");
        assert_eq!(self.cgpt_slot(Slot::B)?, b, "{when}: slot b (cgpt)");
        Ok(())
    }

    /// Sets one slot's priority, tries and successful bit with the bootloader-hooks library
    /// (provisioning: unchecked, like a factory would).
    pub fn set_slot(&self, slot: Slot, priority: u8, tries: u8, successful: bool) -> Result<()> {
        let gpt = |source| Error::Gpt {
            disk: self.path.clone(),
            source,
        };
        let (mut disk, _) = self.table(true)?;
        let (mut table, state) =
            hooks_disk::load(&mut disk, &SlotLayout::default()).map_err(gpt)?;
        let attrs = BootAttrs::new(priority, tries, successful).map_err(gpt)?;
        let next = state.with_attrs(slot, attrs);
        hooks_disk::commit(&mut disk, &mut table, &next).map_err(gpt)?;
        Ok(())
    }

    /// Sets one slot's boot bits with ChromeOS' `cgpt add -i N -P -T -S`.
    pub fn cgpt_set_slot(
        &self,
        slot: Slot,
        priority: u8,
        tries: u8,
        successful: bool,
    ) -> Result<()> {
        let n = self.slot_partition(slot)?;
        tool::run(
            Command::new("cgpt")
                .args(["add", "-i", &n.to_string()])
                .args(["-P", &priority.to_string(), "-T", &tries.to_string()])
                .args(["-S", if successful { "1" } else { "0" }])
                .arg(&self.path),
            "cgpt",
        )?;
        Ok(())
    }

    /// One slot's (priority, tries, successful) as `cgpt show -P -T -S` reads them.
    pub fn cgpt_slot(&self, slot: Slot) -> Result<(u8, u8, bool)> {
        let n = self.slot_partition(slot)?.to_string();
        let field = |flag: &str| -> Result<u8> {
            let out = tool::run_text(
                Command::new("cgpt")
                    .args(["show", "-i", &n, flag])
                    .arg(&self.path),
                "cgpt",
            )?;
            out.trim().parse().map_err(|_| Error::ToolOutput {
                command: format!("cgpt show -i {n} {flag} {}", self.path.display()),
                output: out.clone(),
            })
        };
        Ok((field("-P")?, field("-T")?, field("-S")? == 1))
    }
}

/// Slot a's and slot b's `(priority, tries, successful)` in one table copy, or why that copy
/// cannot be read.
pub type CopyBits =
    std::result::Result<((u8, u8, bool), (u8, u8, bool)), flipside_bootloader_hooks::Error>;

/// The two GPT copies of a disk, read separately ([`TestDisk::table_copies`]).
#[derive(Debug)]
pub struct TableCopies {
    /// Both copies are valid and describe the same table.
    pub agree: bool,
    pub primary: CopyBits,
    pub backup: CopyBits,
}

fn bits_of(state: &BootState, slot: Slot) -> (u8, u8, bool) {
    let a = state.attrs(slot);
    (a.priority(), a.tries(), a.successful())
}

/// A disk image read with one byte range seen as zeros (a table copy's header hidden, so that
/// the other copy is read); it refuses writes.
struct HiddenSector {
    file: File,
    hidden: std::ops::Range<u64>,
}

impl BlockDevice for HiddenSector {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), DeviceError> {
        self.file.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        let (from, to) = (self.hidden.start.max(offset), self.hidden.end.min(end));
        if from < to {
            buf[(from - offset) as usize..(to - offset) as usize].fill(0);
        }
        Ok(())
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> std::result::Result<(), DeviceError> {
        Err(std::io::Error::other("a table copy is only read"))
    }
    fn sync(&mut self) -> std::result::Result<(), DeviceError> {
        Ok(())
    }
    fn byte_len(&mut self) -> std::result::Result<u64, DeviceError> {
        self.file.byte_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_arguments() {
        let args = sgdisk_args(&DiskLayout::default());
        let joined = args.join(" ");
        assert!(joined.contains("-n 1:2048:+65536K"), "{joined}");
        assert!(joined.contains("-n 2:0:+65536K"), "{joined}");
        assert!(joined.contains("-n 3:0:+16384K"), "{joined}");
        assert!(joined.contains("-c 1:root-a") && joined.contains("-c 2:root-b"));
        assert!(joined.contains("-c 3:data"));
        assert_eq!(disk_size(&DiskLayout::default()), 146 * MIB);
    }

    #[test]
    fn extra_partitions_follow_the_data_partition() {
        let extra = [
            ExtraPartition {
                label: "esp".into(),
                type_guid: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                size: 8 * MIB,
            },
            ExtraPartition {
                label: "kernel-a".into(),
                type_guid: DATA_TYPE,
                size: 48 * MIB,
            },
        ];
        let joined = sgdisk_args_with(&DiskLayout::default(), &extra).join(" ");
        assert!(joined.starts_with(&sgdisk_args(&DiskLayout::default()).join(" ")));
        assert!(
            joined.ends_with(
                "-n 4:0:+8192K -t 4:C12A7328-F81F-11D2-BA4B-00A0C93EC93B -c 4:esp \
                 -n 5:0:+49152K -t 5:0FC63DAF-8483-4772-8E79-3D69D8477DE4 -c 5:kernel-a"
            ),
            "{joined}"
        );
    }
}
