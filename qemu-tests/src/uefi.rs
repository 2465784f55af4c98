//! UEFI boots of the appliance: OVMF firmware, flipside-boot as `\EFI\BOOT\BOOTX64.EFI` on a
//! small FAT ESP, and a unified kernel image (systemd's stub + Debian's kernel + the test
//! initramfs + command line + os-release, assembled by `flipside_image_builder::uki`) in each
//! slot's kernel partition. QEMU gets the disk alone (no `-kernel`/`-initrd`).
//!
//! | partition | name | contents |
//! |---|---|---|
//! | 1, 2 | `root-a`, `root-b` | slot images; the boot bits, as without UEFI |
//! | 3 | `data` | ext4 |
//! | 4 | `esp` | FAT, `\EFI\BOOT\BOOTX64.EFI` = flipside-boot |
//! | 5, 6 | `kernel-a`, `kernel-b` | the raw bytes of a UKI, zero-padded |
//!
//! Host packages: `ovmf`, `dosfstools`, `mtools`, `systemd-boot-efi`; the rustup target
//! `x86_64-unknown-uefi` (scripts/setup.sh installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flipside_bootloader_hooks::Slot;
use flipside_image_builder::uki;

use crate::disk::{DiskLayout, ExtraPartition, TestDisk, DATA_TYPE};
use crate::error::{Error, Result};
use crate::testbed::TestBed;
use crate::tool;
use crate::vm::{Firmware, VmConfig};

/// OVMF's code, 4 MiB flash layout (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's empty variable store; each VM gets a writable copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// GPT type of the EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type of the kernel partitions: Linux data (nothing mounts them; they hold raw bytes).
pub const KERNEL_TYPE: &str = DATA_TYPE;
/// GPT name of the ESP.
pub const ESP_LABEL: &str = "esp";
const MIB: u64 = 1 << 20;
/// Bytes of the ESP: flipside-boot is about 130 KB.
pub const ESP_SIZE: u64 = 8 * MIB;
/// Bytes of each kernel partition: the UKI is about 10.3 MB (8.2 MB kernel, 2 MB initramfs).
pub const KERNEL_SIZE: u64 = 16 * MIB;
/// The command line in the UKI's `.cmdline` (flipside-boot appends `flipside.slot=`).
pub const UKI_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// The GPT name of `slot`'s kernel partition.
pub fn kernel_label(slot: Slot) -> String {
    format!("kernel-{}", slot.name())
}

/// The partitions a UEFI disk has after the data partition: ESP, kernel-a, kernel-b.
pub fn partitions() -> Vec<ExtraPartition> {
    partitions_with(KERNEL_SIZE)
}

/// [`partitions`] with kernel partitions of `kernel_size` bytes.
pub fn partitions_with(kernel_size: u64) -> Vec<ExtraPartition> {
    let mut out = vec![ExtraPartition {
        label: ESP_LABEL.into(),
        type_guid: ESP_TYPE,
        size: ESP_SIZE,
    }];
    out.extend(Slot::ALL.map(|slot| ExtraPartition {
        label: kernel_label(slot),
        type_guid: KERNEL_TYPE,
        size: kernel_size,
    }));
    out
}

/// The removable-media boot file of x86-64 UEFI firmware (OVMF).
pub const BOOT_FILE_X64: &str = "BOOTX64.EFI";
/// The removable-media boot file of aarch64 UEFI firmware (U-Boot's distro boot looks for it).
pub const BOOT_FILE_AA64: &str = "BOOTAA64.EFI";

/// A FAT image of `size` bytes holding only `\EFI\BOOT\BOOTX64.EFI` = `app`.
pub fn esp_image(app: &Path, out: &Path, size: u64) -> Result<()> {
    esp_image_with(app, out, size, BOOT_FILE_X64)
}

/// A FAT image of `size` bytes holding only `\EFI\BOOT\<boot_file>` = `app`.
pub fn esp_image_with(app: &Path, out: &Path, size: u64, boot_file: &str) -> Result<()> {
    let _ = fs::remove_file(out);
    tool::run(
        Command::new("mkfs.fat")
            .args(["-C", "-n", "ESP", "-i", "f11b5a1d"])
            .arg(out)
            .arg((size / 1024).to_string()),
        "dosfstools",
    )?;
    let image = out.to_string_lossy().into_owned();
    tool::run(
        Command::new("mmd").args(["-i", &image, "::/EFI", "::/EFI/BOOT"]),
        "mtools",
    )?;
    tool::run(
        Command::new("mcopy")
            .args(["-i", &image])
            .arg(app)
            .arg(format!("::/EFI/BOOT/{boot_file}")),
        "mtools",
    )?;
    Ok(())
}

/// A UKI of the harness' kernel and initramfs with `cmdline`, named for system `name`
/// `version`, written to `out`.
pub fn build_uki(bed: &TestBed, out: &Path, cmdline: &str, version: u64) -> Result<PathBuf> {
    let kernel = bed.assets.kernel.bzimage();
    let os_release = uki::os_release("testapp", version, &version.to_string());
    let parts = uki::UkiParts {
        stub: Path::new(uki::DEFAULT_STUB),
        kernel: &kernel,
        initrd: &bed.assets.initramfs,
        cmdline,
        os_release: &os_release,
    };
    uki::assemble(&parts, out).map_err(|e| Error::Io {
        action: "assemble a UKI (flipside_image_builder::uki) at",
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(out.to_path_buf())
}

/// A fresh UEFI test disk `<name>.img`: the default layout plus [`partitions`], the ESP holding
/// flipside-boot, kernel partitions empty, both slots P=0 T=0 S=0.
pub fn disk(bed: &TestBed, name: &str) -> Result<TestDisk> {
    disk_with(bed, name, &DiskLayout::default())
}

/// [`disk`] with `layout`'s slot and data sizes.
pub fn disk_with(bed: &TestBed, name: &str, layout: &DiskLayout) -> Result<TestDisk> {
    disk_with_app(bed, name, layout, bed.assets.flipside_boot()?)
}

/// [`disk_with`] with `app` (flipside-boot, signed or not) as the ESP's boot application.
pub fn disk_with_app(
    bed: &TestBed,
    name: &str,
    layout: &DiskLayout,
    app: &Path,
) -> Result<TestDisk> {
    let path = bed.work().join(format!("{name}.img"));
    let disk = TestDisk::create_with(&path, layout, None, &partitions())?;
    let esp = bed.work().join(format!("{name}.esp.img"));
    esp_image(app, &esp, ESP_SIZE)?;
    disk.write_partition(ESP_LABEL, &esp)?;
    let _ = fs::remove_file(&esp);
    Ok(disk)
}

/// OVMF for one VM: its code and a fresh writable copy of the variable store in the scratch
/// directory.
pub fn firmware(bed: &TestBed, vm: &str) -> Result<Firmware> {
    let code = PathBuf::from(OVMF_CODE);
    if !code.is_file() {
        return Err(Error::ToolMissing {
            tool: OVMF_CODE.into(),
            package: "ovmf".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let vars = bed.work().join(format!("{vm}.OVMF_VARS.fd"));
    fs::copy(OVMF_VARS, &vars).map_err(Error::io("copy", OVMF_VARS))?;
    Ok(Firmware {
        code,
        vars,
        secure_boot: false,
    })
}

/// A VM that boots `disk` through OVMF and flipside-boot.
pub fn vm_config(bed: &TestBed, name: &str, disk: &TestDisk) -> Result<VmConfig> {
    let mut cfg = bed.vm_config(name, disk);
    cfg.firmware = Some(firmware(bed, name)?);
    Ok(cfg)
}

/// The boot stages of one VM, from its timeline log: seconds since QEMU started at which each
/// stage's first line appeared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageTimes {
    /// `flipside-boot: start`: the firmware ran flipside-boot.
    pub flipside_boot: Option<f64>,
    /// `flipside-boot: boot`: the kernel image is about to be loaded.
    pub load_kernel: Option<f64>,
    /// `FLIPSIDE: initrd start`: the kernel runs the initramfs' /init.
    pub initrd: Option<f64>,
    /// `FLIPSIDE: system up`: the slot's init runs.
    pub system: Option<f64>,
}

/// Reads [`StageTimes`] from timeline text (`   1.234s line`). Pure.
pub fn stage_times(timeline: &str) -> StageTimes {
    let mut t = StageTimes::default();
    for line in timeline.lines() {
        let Some((secs, text)) = line.trim_start().split_once("s ") else {
            continue;
        };
        let Ok(secs) = secs.parse::<f64>() else {
            continue;
        };
        let slot = if text.contains("flipside-boot: start") {
            &mut t.flipside_boot
        } else if text.contains("flipside-boot: boot ") {
            &mut t.load_kernel
        } else if text.contains("FLIPSIDE: initrd start") {
            &mut t.initrd
        } else if text.contains("FLIPSIDE: system up") {
            &mut t.system
        } else {
            continue;
        };
        slot.get_or_insert(secs);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uefi_disk_partitions() {
        let labels: Vec<_> = partitions().into_iter().map(|p| p.label).collect();
        assert_eq!(labels, ["esp", "kernel-a", "kernel-b"]);
        assert!(partitions().iter().all(|p| p.size % MIB == 0));
    }

    #[test]
    fn stage_times_take_each_first_line() {
        let timeline = "   0.100s BdsDxe: loading Boot0001\n\
                        \x20  4.500s flipside-boot: start version=0.1.0\n\
                        \x20  5.000s flipside-boot: select slot=b trial=0\n\
                        \x20  6.250s flipside-boot: boot slot=b\n\
                        \x20  9.000s FLIPSIDE: initrd start kernel=6.1\n\
                        \x20 10.500s FLIPSIDE: system up name=t version=2 slot=b\n\
                        \x20 12.000s FLIPSIDE: initrd start kernel=6.1\n";
        assert_eq!(
            stage_times(timeline),
            StageTimes {
                flipside_boot: Some(4.5),
                load_kernel: Some(6.25),
                initrd: Some(9.0),
                system: Some(10.5),
            }
        );
        assert_eq!(stage_times("garbage\n"), StageTimes::default());
    }
}
