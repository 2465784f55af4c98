//! The aarch64 appliance: `qemu-system-aarch64 -machine virt` (TCG) with Debian's U-Boot for
//! QEMU as its firmware. U-Boot's distro boot finds `\EFI\BOOT\BOOTAA64.EFI` = flipside-boot
//! (built for `aarch64-unknown-uefi`) on the ESP; flipside-boot applies the slot rules to the
//! GPT bits, records a consumed try through U-Boot's `EFI_BLOCK_IO`, and starts the slot's
//! unified kernel image (systemd's arm64 stub `linuxaa64.efi.stub` + Debian's arm64 `Image` +
//! an arm64 initramfs) from `kernel-a`/`kernel-b` with `LoadImage` from memory.
//!
//! | asset | from | cached under `<assets>/arm64/` as |
//! |---|---|---|
//! | kernels | `apt-get download linux-image-<release>:arm64` (the newest build and the one before it), `dpkg -x` | `kernel/<release>/` (`Image`, the modules of [`MODULES`]) |
//! | busybox | `apt-get download busybox-static:arm64` | `debs/busybox-static/` |
//! | systemd's arm64 stub | `apt-get download systemd-boot-efi:arm64` | `debs/systemd-boot-efi/` |
//! | static `flipside-select`, `flipside-verity`, `flipside` | `cargo build --release --target aarch64-unknown-linux-gnu`, linker `aarch64-linux-gnu-gcc`, `+crt-static` (environment variables of this build only: host builds are untouched) | `<assets>/cargo-aarch64/` |
//! | flipside-boot | `cargo build --release -p flipside-boot --target aarch64-unknown-uefi` | `<assets>/cargo-uefi/` (shared with x86-64) |
//! | initramfs per kernel | [`crate::initramfs`], the same `/init` as on x86-64 | `initramfs-<release>.cpio.zst` |
//!
//! Host packages: `qemu-system-arm u-boot-qemu gcc-aarch64-linux-gnu libc6-dev-arm64-cross
//! qemu-user-static arch-test`, `dpkg --add-architecture arm64`, qemu-user registered with
//! binfmt_misc (for the arm64 Debian tree) and the rustup targets
//! `aarch64-unknown-linux-gnu` and `aarch64-unknown-uefi` (scripts/setup.sh does all of it).
//!
//! The slot images are Debian arm64 appliance releases ([`crate::arm_chain`]); the arm64
//! busybox serves the initramfs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::disk::{DiskLayout, TestDisk};
use crate::elf::{self, ElfMachine};
use crate::error::{Error, Result};
use crate::initramfs;
use crate::kernel;
use crate::once::get_or_build;
use crate::paths;
use crate::tool;
use crate::uefi;
use crate::vm::{Machine, OnReboot, Vm, VmConfig};

/// Debian's U-Boot for QEMU's arm64 `virt` machine (package `u-boot-qemu`).
pub const U_BOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// The Linux target of the static aarch64 programs.
pub const LINUX_TARGET: &str = "aarch64-unknown-linux-gnu";
/// The UEFI target of flipside-boot on aarch64.
pub const UEFI_TARGET: &str = "aarch64-unknown-uefi";
/// Debian's cross linker (package `gcc-aarch64-linux-gnu`); it also compiles zstd's C code.
pub const CROSS_GCC: &str = "aarch64-linux-gnu-gcc";
/// The metapackage whose dependency names the current arm64 kernel package.
pub const METAPACKAGE: &str = "linux-image-arm64:arm64";
/// systemd's arm64 EFI stub inside the `systemd-boot-efi:arm64` package.
pub const STUB_IN_PACKAGE: &str = "usr/lib/systemd/boot/efi/linuxaa64.efi.stub";
/// The UKIs' command line: the PL011 UART is `ttyAMA0`; a panic resets at once.
pub const UKI_CMDLINE: &str = "console=ttyAMA0 quiet panic=-1";
/// Hardware id of the aarch64 appliance.
pub const HARDWARE_ID: &str = "qemu-aarch64";
/// Upper bound of one aarch64 boot under TCG (U-Boot, flipside-boot, the kernel, the
/// system): about 15 s alone; the margin is for a machine busy with other builds.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// Modules the arm64 initramfs loads, in this order (Debian's arm64 kernel builds virtio, the
/// PCI host bridge and the PL011 UART in; the rest are modules): virtio PCI and block,
/// squashfs for the slots, ext4 for the data partition, virtio-net for the updates over the
/// network, efivarfs.
pub const MODULES: &[&str] = &[
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "squashfs",
    "crc32c_generic",
    "libcrc32c",
    "crc16",
    "mbcache",
    "jbd2",
    "ext4",
    "failover",
    "net_failover",
    "virtio_net",
    "efivarfs",
];

/// Sets the environment of a cargo command that builds for [`LINUX_TARGET`]: Debian's cross
/// linker and C compiler, and static linking. Only this command sees it.
pub fn cross_env(cmd: &mut Command) {
    cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", CROSS_GCC)
        .env("CC_aarch64_unknown_linux_gnu", CROSS_GCC)
        .env("AR_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-ar")
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
}

/// One arm64 kernel with its modules and the initramfs made for it.
#[derive(Clone, Debug)]
pub struct ArmKernel {
    /// `uname -r`, e.g. `6.1.0-57-arm64`.
    pub release: String,
    /// The kernel `Image` (itself a PE/EFI application).
    pub image: PathBuf,
    /// The `.ko` files of [`MODULES`], in load order.
    pub modules: Vec<PathBuf>,
    /// The initramfs with these modules.
    pub initramfs: PathBuf,
}

/// Everything an aarch64 VM boots from.
#[derive(Debug)]
pub struct ArmAssets {
    /// `<assets>/arm64`.
    pub dir: PathBuf,
    /// The newest arm64 kernel build, then the one before it.
    pub kernels: [ArmKernel; 2],
    /// Debian's static arm64 busybox.
    pub busybox: PathBuf,
    pub flipside_select: PathBuf,
    pub flipside_verity: PathBuf,
    /// The updater.
    pub flipside: PathBuf,
    /// flipside-boot for aarch64 UEFI.
    pub flipside_boot: PathBuf,
    /// systemd's arm64 EFI stub.
    pub stub: PathBuf,
}

static ASSETS: OnceLock<ArmAssets> = OnceLock::new();
static PREPARING: Mutex<()> = Mutex::new(());

impl ArmAssets {
    /// The assets, prepared on first call in this process.
    pub fn get() -> Result<&'static ArmAssets> {
        get_or_build(&ASSETS, &PREPARING, || {
            prepare(&paths::assets_dir().join("arm64"))
        })
    }

    /// The newer kernel (release 2 and later boot it).
    pub fn new_kernel(&self) -> &ArmKernel {
        &self.kernels[0]
    }

    /// The older kernel (release 1 boots it).
    pub fn old_kernel(&self) -> &ArmKernel {
        &self.kernels[1]
    }
}

/// Prepares every asset under `dir`.
pub fn prepare(dir: &Path) -> Result<ArmAssets> {
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    if !Path::new(U_BOOT).is_file() {
        return Err(Error::ToolMissing {
            tool: U_BOOT.into(),
            package: "u-boot-qemu".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let busybox = unpack_deb(dir, "busybox-static")?.join("bin/busybox");
    require_static(
        &busybox,
        "busybox-static:arm64 should hold a static busybox",
    )?;
    let stub = unpack_deb(dir, "systemd-boot-efi")?.join(STUB_IN_PACKAGE);
    let [flipside_select, flipside_verity, flipside] = cross_build(dir)?;
    let flipside_boot = uefi_build(dir)?;
    let new = kernel_package()?;
    let old = older_kernel_package(&new)?;
    let mut kernels = Vec::new();
    for package in [new, old] {
        let (release, image, modules) = unpack_kernel(dir, &package)?;
        let initramfs = dir.join(format!("initramfs-{release}.cpio.zst"));
        initramfs::build(
            &initramfs::Inputs {
                busybox: busybox.clone(),
                flipside_select: flipside_select.clone(),
                flipside_verity: flipside_verity.clone(),
                modules: modules.clone(),
            },
            &initramfs,
        )?;
        kernels.push(ArmKernel {
            release,
            image,
            modules,
            initramfs,
        });
    }
    let [new, old]: [ArmKernel; 2] = kernels
        .try_into()
        .unwrap_or_else(|_| unreachable!("two kernels were prepared"));
    Ok(ArmAssets {
        dir: dir.to_path_buf(),
        kernels: [new, old],
        busybox,
        flipside_select,
        flipside_verity,
        flipside,
        flipside_boot,
        stub,
    })
}

fn require_static(path: &Path, hint: &'static str) -> Result<()> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    match elf::static_problem(&bytes, ElfMachine::Aarch64) {
        None => Ok(()),
        Some(why) => Err(Error::NotStatic {
            path: path.to_path_buf(),
            why,
            hint,
        }),
    }
}

/// `cargo build --release ARGS` in the workspace into `target_dir`, with `cross` set for the
/// aarch64 Linux target; the outer build's flags are kept out.
fn cargo(args: &[&str], target_dir: &Path, cross: bool) -> Result<()> {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.arg("build")
        .arg("--release")
        .args(args)
        .current_dir(paths::workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if cross {
        cross_env(&mut cmd);
    }
    eprintln!("qemu-tests: {}", tool::describe(&cmd));
    tool::run(
        &mut cmd,
        "cargo (rustup target add aarch64-unknown-linux-gnu aarch64-unknown-uefi; apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)",
    )?;
    Ok(())
}

/// The static aarch64 `flipside-select`, `flipside-verity` and `flipside`, in one build into
/// `<assets>/cargo-aarch64` (beside the x86-64 `cargo-static`).
fn cross_build(dir: &Path) -> Result<[PathBuf; 3]> {
    let target = dir.with_file_name("cargo-aarch64");
    cargo(
        &[
            "--target",
            LINUX_TARGET,
            "-p",
            "flipside-bootloader-hooks",
            "--bin",
            "flipside-select",
            "-p",
            "flipside-verity",
            "--bin",
            "flipside-verity",
            "-p",
            "flipside-updater",
            "--bin",
            "flipside",
        ],
        &target,
        true,
    )?;
    let bin = |name: &str| target.join(LINUX_TARGET).join("release").join(name);
    let out = [
        bin("flipside-select"),
        bin("flipside-verity"),
        bin("flipside"),
    ];
    for path in &out {
        require_static(
            path,
            "build it with RUSTFLAGS='-C target-feature=+crt-static' and linker aarch64-linux-gnu-gcc",
        )?;
    }
    Ok(out)
}

/// `flipside-build` for the host, in `<assets>/cargo` (shared with [`crate::Assets`]).
pub fn flipside_build() -> Result<PathBuf> {
    let target = paths::assets_dir().join("cargo");
    cargo(
        &["-p", "flipside-image-builder", "--bin", "flipside-build"],
        &target,
        false,
    )?;
    Ok(target.join("release/flipside-build"))
}

/// flipside-boot for [`UEFI_TARGET`], in `<assets>/cargo-uefi`, shared with the x86-64 UEFI
/// build.
fn uefi_build(dir: &Path) -> Result<PathBuf> {
    let target = dir.with_file_name("cargo-uefi");
    cargo(
        &["-p", "flipside-boot", "--target", UEFI_TARGET],
        &target,
        false,
    )?;
    Ok(target
        .join(UEFI_TARGET)
        .join("release")
        .join("flipside-boot.efi"))
}

/// `apt-get download PACKAGE:arm64` unpacked (`dpkg -x`) into `<dir>/debs/<package>/`, once.
fn unpack_deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let tree = dir.join("debs").join(package.trim_end_matches(":arm64"));
    if tree.is_dir() {
        return Ok(tree);
    }
    let parent = dir.join("debs");
    fs::create_dir_all(&parent).map_err(Error::io("create directory", &parent))?;
    let work = tempfile::Builder::new()
        .prefix(".deb-")
        .tempdir_in(&parent)
        .map_err(Error::io("create a directory in", &parent))?;
    let name = if package.contains(':') {
        package.to_string()
    } else {
        format!("{package}:arm64")
    };
    let staged = tool::unpack_deb(
        &name,
        work.path(),
        "apt (dpkg --add-architecture arm64 && apt-get update: scripts/setup.sh)",
    )?;
    fs::rename(&staged, &tree).map_err(Error::io("rename into place", &tree))?;
    Ok(tree)
}

/// The kernel package `linux-image-arm64:arm64` depends on, e.g.
/// `linux-image-6.1.0-57-arm64:arm64`.
fn kernel_package() -> Result<String> {
    if let Ok(package) = std::env::var("FLIPSIDE_QEMU_ARM_KERNEL_PACKAGE") {
        return Ok(package);
    }
    let out = tool::run_text(
        Command::new("apt-cache").args(["depends", METAPACKAGE]),
        "apt",
    )?;
    kernel::package_from_depends(&out).ok_or(Error::KernelPackage { output: out })
}

/// The arm64 build before `newer` (`linux-image-6.1.0-NN-arm64:arm64`) that apt knows.
fn older_kernel_package(newer: &str) -> Result<String> {
    let release = newer
        .trim_end_matches(":arm64")
        .trim_start_matches("linux-image-");
    let package = kernel::older_package(release, "FLIPSIDE_QEMU_ARM_KERNEL2_PACKAGE")?;
    Ok(match package.ends_with(":arm64") {
        true => package,
        false => format!("{package}:arm64"),
    })
}

/// The kernel `Image` and the modules of [`MODULES`] of `package`, cached under
/// `<dir>/kernel/<release>/`.
fn unpack_kernel(dir: &Path, package: &str) -> Result<(String, PathBuf, Vec<PathBuf>)> {
    let release = package
        .trim_end_matches(":arm64")
        .trim_start_matches("linux-image-")
        .to_string();
    let cache = dir.join("kernel").join(&release);
    let image = cache.join("Image");
    let module_path = |m: &str| cache.join(format!("{m}.ko"));
    if !image.is_file() || !MODULES.iter().all(|m| module_path(m).is_file()) {
        let tree = unpack_deb(dir, package)?;
        fs::create_dir_all(&cache).map_err(Error::io("create directory", &cache))?;
        let vmlinuz = tree.join(format!("boot/vmlinuz-{release}"));
        let bytes = fs::read(&vmlinuz).map_err(Error::io("read", &vmlinuz))?;
        // arm64 `Image`: "MZ", then the magic "ARM\x64" at offset 56.
        if !bytes.starts_with(b"MZ") || bytes.get(56..60) != Some(b"ARM\x64") {
            return Err(Error::ToolOutput {
                command: format!("dpkg -x {package}"),
                output: format!("{} is no uncompressed arm64 Image", vmlinuz.display()),
            });
        }
        fs::write(&image, &bytes).map_err(Error::io("write", &image))?;
        let modules_dir = tree.join("lib/modules").join(&release);
        for m in MODULES {
            let found = find_module(&modules_dir, m)?.ok_or_else(|| Error::ModuleMissing {
                module: m.to_string(),
                dir: modules_dir.clone(),
            })?;
            let out = module_path(m);
            fs::copy(&found, &out).map_err(Error::io("copy", &found))?;
        }
        let _ = fs::remove_dir_all(&tree);
    }
    let modules = MODULES.iter().map(|m| module_path(m)).collect();
    Ok((release, image, modules))
}

/// The `.ko` of `module` below `dir` (a `-` in the name may be `_` in the file, and back).
fn find_module(dir: &Path, module: &str) -> Result<Option<PathBuf>> {
    for name in [
        module.to_string(),
        module.replace('-', "_"),
        module.replace('_', "-"),
    ] {
        if let Some(found) = kernel::find_recursive(dir, &format!("{name}.ko"))? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Bytes of each aarch64 kernel partition: the UKI is about 35 MB (Debian's arm64 `Image` is
/// not compressed, 33 MB; systemd 252's stub could not decompress it either).
pub const KERNEL_SIZE: u64 = 48 << 20;

/// A fresh aarch64 disk `<name>.img` in `work`: root-a, root-b, data (sizes of `layout`),
/// esp (flipside-boot as `\EFI\BOOT\BOOTAA64.EFI`), kernel-a, kernel-b ([`KERNEL_SIZE`]
/// each); both slots P=0 T=0 S=0.
pub fn disk_with(
    assets: &ArmAssets,
    work: &Path,
    name: &str,
    layout: &DiskLayout,
) -> Result<TestDisk> {
    let path = work.join(format!("{name}.img"));
    let disk = TestDisk::create_with(&path, layout, None, &uefi::partitions_with(KERNEL_SIZE))?;
    let esp = work.join(format!("{name}.esp.img"));
    uefi::esp_image_with(
        &assets.flipside_boot,
        &esp,
        uefi::ESP_SIZE,
        uefi::BOOT_FILE_AA64,
    )?;
    disk.write_partition(uefi::ESP_LABEL, &esp)?;
    let _ = fs::remove_file(&esp);
    Ok(disk)
}

/// A VM booting `disk` through U-Boot, logging as `name` into `log_dir`; the guest's reboots
/// reset it.
pub fn vm_config(log_dir: &Path, name: &str, disk: &TestDisk) -> VmConfig {
    VmConfig {
        machine: Machine::ArmVirt {
            bios: PathBuf::from(U_BOOT),
        },
        name: name.to_string(),
        log_dir: log_dir.to_path_buf(),
        kernel: PathBuf::new(),
        initramfs: PathBuf::new(),
        disk: Some(disk.path().to_path_buf()),
        on_reboot: OnReboot::Reset,
        watchdog_secs: None,
        network: None,
        memory_mib: 512,
        extra_cmdline: Vec::new(),
        firmware: None,
    }
}

/// Starts `cfg` (always TCG).
pub fn start(cfg: &VmConfig) -> Result<Vm> {
    Vm::start(cfg, crate::Accel::Tcg)
}
