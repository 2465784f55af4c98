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
//! qemu-user-static`, `dpkg --add-architecture arm64` and the rustup targets
//! `aarch64-unknown-linux-gnu` and `aarch64-unknown-uefi` (scripts/setup.sh does all of it).
//!
//! The slot images are squashfs trees made here with `mksquashfs` (the builder's layout, like
//! [`crate::appliance`]'s `mksquashfs` path) holding the arm64 busybox, the static aarch64
//! `flipside`, its configuration and a health check.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flipside_bootloader_hooks::Slot;
use flipside_image_builder::uki;

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
/// squashfs for the slots, ext4 for the data partition, efivarfs.
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

/// The ABI number of a Debian kernel package, e.g. 57 of `linux-image-6.1.0-57-arm64:arm64`,
/// with the text before and after it. Pure.
pub fn kernel_abi(package: &str) -> Option<(&str, u32, &str)> {
    let name = package.trim_end_matches(":arm64");
    let end = name.strip_suffix("-arm64")?;
    let (prefix, abi) = end.rsplit_once('-')?;
    Some((prefix, abi.parse().ok()?, "-arm64"))
}

/// The newest arm64 build older than `newer` that apt knows (`apt-cache show`), at most 10
/// ABI numbers back.
fn older_kernel_package(newer: &str) -> Result<String> {
    if let Ok(package) = std::env::var("FLIPSIDE_QEMU_ARM_KERNEL2_PACKAGE") {
        return Ok(package);
    }
    let (prefix, abi, suffix) = kernel_abi(newer).ok_or_else(|| Error::KernelPackage {
        output: newer.to_string(),
    })?;
    for older in (abi.saturating_sub(10)..abi).rev() {
        let candidate = format!("{prefix}-{older}{suffix}:arm64");
        let known = Command::new("apt-cache")
            .args(["show", "--no-all-versions", &candidate])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
        if known {
            return Ok(candidate);
        }
    }
    Err(Error::KernelPackage {
        output: format!("no arm64 kernel build older than {newer}"),
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
            let found = find_module(&modules_dir, m).ok_or_else(|| Error::ModuleMissing {
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
fn find_module(dir: &Path, module: &str) -> Option<PathBuf> {
    let names = [
        format!("{module}.ko"),
        format!("{}.ko", module.replace('-', "_")),
        format!("{}.ko", module.replace('_', "-")),
    ];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| names.iter().any(|x| x == n))
            {
                return Some(path);
            }
        }
    }
    None
}

/// What a slot's system does on a trial boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Its health check passes: `flipside health` commits the slot.
    Passes,
    /// Its health check fails: `flipside health` marks the slot bad and reboots.
    Fails,
}

/// One aarch64 release: a root image and a UKI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmRelease {
    pub version: u64,
    /// The old kernel (release 1) or the new one.
    pub old_kernel: bool,
    pub health: Health,
    /// The UKI's initramfs `/init` exits at once: the kernel panics (`Attempted to kill
    /// init`) before any root is mounted.
    pub kernel_panics: bool,
    /// Published as built for x86_64 (the same contents otherwise): an aarch64 device must
    /// refuse it.
    pub foreign_architecture: bool,
}

impl ArmRelease {
    /// A good release.
    pub fn good(version: u64, old_kernel: bool) -> Self {
        Self {
            version,
            old_kernel,
            health: Health::Passes,
            kernel_panics: false,
            foreign_architecture: false,
        }
    }
}

/// The `/etc/flipside/config.toml` of the aarch64 releases: the data partition holds the
/// state, the updater's reboot command prints the end marker first. Pure.
pub fn config_toml() -> String {
    r#"# flipside on the aarch64 appliance (generated by qemu-tests).
[repository]
mirrors = ["/media/repo"]
trusted_root = "root.json"

[device]
disk = "/dev/vda"
state_dir = "/data/flipside"

[update]
trial_boots = 2

[health]
dir = "/etc/flipside/health.d"
timeout_secs = 30
reboot_command = ["/bin/sh", "-c", "echo 'FLIPSIDE: system end action=reboot by=flipside'; exec reboot -f"]
"#
    .to_string()
}

/// The release's health check. Pure.
pub fn health_check(health: Health) -> &'static str {
    match health {
        Health::Passes => "#!/bin/sh\n# The data partition holds the updater's state: it must be mounted.\ngrep -q ' /data ' /proc/mounts\n",
        Health::Fails => "#!/bin/sh\n# The service of this release does not come up.\necho 'appliance service did not start' >&2\nexit 1\n",
    }
}

/// The release's `/init`: on a trial boot `flipside health` (commit, or mark bad and reboot),
/// then reboot once after a commit so that the next boot shows the slot proven; otherwise
/// power off. Pure.
pub fn init_script(version: u64) -> String {
    format!(
        r#"{head}uname=$(cat /proc/sys/kernel/osrelease)
echo "FLIPSIDE: system kernel release=$uname"
# What the booted system sees of flipside-boot's volatile FlipsideSlot variable: U-Boot's
# runtime services decide whether efivarfs has it.
efi_slot=no-efi
if [ -d /sys/firmware/efi ]; then
	vars=/sys/firmware/efi/efivars
	grep -q " $vars " /proc/mounts || mount -t efivarfs efivarfs "$vars" 2>/dev/null
	efi_slot=none
	file=$vars/FlipsideSlot-04bfef25-d88a-4d8f-bb49-90caf86c6315
	[ -r "$file" ] && efi_slot=$(dd if="$file" bs=1 skip=4 count=1 2>/dev/null)
fi
echo "FLIPSIDE: system efivar slot=$efi_slot"
if [ "$FLIPSIDE_TRIAL" = 1 ]; then
	# On failure flipside marks this slot bad and runs its reboot command.
	flipside health
	echo "FLIPSIDE: updater health code=$?"
	echo "FLIPSIDE: system end action=reboot"
	reboot -f
	sleep 60
fi
# An update medium (a second disk holding a repository): install from it once, then reboot
# into the update.
if [ -b /dev/vdb ] && [ ! -e /data/flipside-medium-used ]; then
	: >/data/flipside-medium-used
	mount -t squashfs -o ro /dev/vdb /media
	{{ flipside install; echo "FLIPSIDE: updater install code=$?"; }} 2>&1 | cat
	umount /media
	echo "FLIPSIDE: system end action=reboot"
	reboot -f
	sleep 60
fi
echo "FLIPSIDE: system end action=poweroff"
poweroff -f
sleep 60
"#,
        head = crate::appliance::init_head(&format!(
            "/init of the flipside aarch64 appliance, release {version} (generated by qemu-tests)."
        )),
    )
}

/// Busybox applets the aarch64 init and health checks call.
const APPLETS: &[&str] = &[
    "cat", "dd", "echo", "grep", "head", "ls", "mount", "poweroff", "printf", "reboot", "sed",
    "sh", "sleep", "sync", "umount",
];

/// Builds `release`'s root image (squashfs, the builder's layout) under `work`, with
/// `root_json` (a repository's `1.root.json`) as `/etc/flipside/root.json` when given.
pub fn build_root(
    assets: &ArmAssets,
    release: &ArmRelease,
    work: &Path,
    root_json: Option<&str>,
) -> Result<PathBuf> {
    let stage = work.join(format!("arm-{}-stage", release.version));
    let _ = fs::remove_dir_all(&stage);
    let store = stage.join("flipside/store");
    let tools = store.join("00000000000000000000000000000000-tools");
    let base = store.join("00000000000000000000000000000001-base");
    let mkdir = |d: &Path| fs::create_dir_all(d).map_err(Error::io("create directory", d));
    let symlink = |target: &str, link: &Path| {
        std::os::unix::fs::symlink(target, link).map_err(Error::io("create symlink", link))
    };
    let write = |path: &Path, text: &str, mode: u32| -> Result<()> {
        fs::write(path, text).map_err(Error::io("write", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("set permissions of", path))
    };
    mkdir(&tools.join("bin"))?;
    mkdir(&base.join("bin"))?;
    for (from, name) in [(&assets.busybox, "busybox"), (&assets.flipside, "flipside")] {
        let to = tools.join("bin").join(name);
        fs::copy(from, &to).map_err(Error::io("copy", from))?;
    }
    for applet in APPLETS {
        symlink("busybox", &tools.join("bin").join(applet))?;
    }
    let init = base.join("bin/init");
    write(&init, &init_script(release.version), 0o755)?;
    for m in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "data",
        "media",
        "etc/flipside/health.d",
    ] {
        mkdir(&stage.join(m))?;
    }
    if let Some(root_json) = root_json {
        write(&stage.join("etc/flipside/root.json"), root_json, 0o644)?;
    }
    write(
        &stage.join("etc/flipside/config.toml"),
        &config_toml(),
        0o644,
    )?;
    write(
        &stage.join("etc/flipside/health.d/10-service"),
        health_check(release.health),
        0o755,
    )?;
    let in_image = |p: &Path| format!("/{}", p.strip_prefix(&stage).unwrap_or(p).display());
    symlink(&in_image(&tools.join("bin")), &stage.join("bin"))?;
    symlink(&in_image(&tools.join("bin")), &stage.join("sbin"))?;
    symlink(&in_image(&init), &stage.join("init"))?;
    mkdir(&stage.join(".flipside"))?;
    let info = format!(
        "{{\n  \"format\": 1,\n  \"name\": \"armapp\",\n  \"version\": {v},\n  \"display_version\": \"{v}.0\",\n  \
         \"hardware_id\": \"{HARDWARE_ID}\",\n  \"architecture\": \"aarch64\",\n  \"init\": \"{i}\",\n  \"closure\": []\n}}\n",
        v = release.version,
        i = in_image(&init),
    );
    write(&stage.join(".flipside/system.json"), &info, 0o644)?;
    let out = work.join(format!("arm-{}.squashfs", release.version));
    flipside_image_builder::rootfs::make_squashfs(&stage, &out).map_err(|e| Error::ToolOutput {
        command: "mksquashfs".into(),
        output: e.to_string(),
    })?;
    Ok(out)
}

/// The `system.toml` of `release` for `flipside-build`: the tools root (busybox and the
/// aarch64 flipside), a `base` root holding `/init` and `/etc` (from `base_dir`), and a
/// `[kernel]` section with systemd's arm64 stub and the kernel's release. Pure.
pub fn system_toml(
    release: &ArmRelease,
    assets: &ArmAssets,
    kernel: &ArmKernel,
    initrd: &Path,
    base_dir: &Path,
) -> String {
    let links = APPLETS
        .iter()
        .map(|a| format!("\"bin/{a}\" = \"busybox\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# aarch64 appliance release {v}, generated by qemu-tests.
name = "armapp"
version = {v}
display_version = "{v}.0"
hardware_id = "{HARDWARE_ID}"
architecture = "{architecture}"
init = "@base/bin/init"
slot_size = "32MiB"
mountpoints = ["/proc", "/sys", "/dev", "/run", "/tmp", "/data", "/media"]

[symlinks]
"/bin" = "@tools/bin"
"/sbin" = "@tools/bin"
"/etc" = "@base/etc"

[[root]]
name = "tools"
files = {{ "bin/busybox" = "{busybox}", "bin/flipside" = "{flipside}" }}
links = {{ {links} }}

[[root]]
name = "base"
dir = "{base}"

[kernel]
image = "{image}"
initrd = "{initrd}"
cmdline = "{UKI_CMDLINE}"
stub = "{stub}"
release = "{release}"
"#,
        v = release.version,
        architecture = if release.foreign_architecture {
            "x86_64"
        } else {
            "aarch64"
        },
        busybox = assets.busybox.display(),
        flipside = assets.flipside.display(),
        base = base_dir.display(),
        image = kernel.image.display(),
        initrd = initrd.display(),
        stub = assets.stub.display(),
        release = kernel.release,
    )
}

/// A repository on an update medium: `flipside-build repo init`, then each of `releases`
/// built by `flipside-build image` and added; the medium is a squashfs image holding `repo/`.
/// Returns the medium and the repository's `1.root.json`.
pub fn update_medium(
    assets: &ArmAssets,
    builder: &Path,
    releases: &[ArmRelease],
    work: &Path,
) -> Result<(PathBuf, String)> {
    let top = work.join("medium");
    let repo = top.join("repo");
    let keys = work.join("keys");
    let cli = |args: &[&std::ffi::OsStr]| -> Result<()> {
        tool::run(
            Command::new(builder).args(args),
            "flipside-image-builder (cargo build -p flipside-image-builder)",
        )
        .map(|_| ())
    };
    let os = std::ffi::OsStr::new;
    cli(&[
        os("repo"),
        os("init"),
        os("--repo"),
        repo.as_os_str(),
        os("--keys"),
        keys.as_os_str(),
        os("--expires"),
        os("timestamp=3"),
    ])?;
    let root_path = repo.join("metadata/1.root.json");
    let root_json = fs::read_to_string(&root_path).map_err(Error::io("read", &root_path))?;
    let write = |path: &Path, text: &str, mode: u32| -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        }
        fs::write(path, text).map_err(Error::io("write", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("set permissions of", path))
    };
    for release in releases {
        let src = work.join(format!("arm-{}-src", release.version));
        let base = src.join("base");
        write(&base.join("bin/init"), &init_script(release.version), 0o755)?;
        write(
            &base.join("etc/flipside/config.toml"),
            &config_toml(),
            0o644,
        )?;
        write(&base.join("etc/flipside/root.json"), &root_json, 0o644)?;
        write(
            &base.join("etc/flipside/health.d/10-service"),
            health_check(release.health),
            0o755,
        )?;
        let (kernel, initrd) = release_kernel(assets, release, work)?;
        let toml = src.join("system.toml");
        write(
            &toml,
            &system_toml(release, assets, kernel, &initrd, &base),
            0o644,
        )?;
        let out = work.join(format!("arm-{}-release", release.version));
        crate::appliance::build_with(builder, &toml, &out, &work.join("store"))?;
        cli(&[
            os("repo"),
            os("add"),
            os("--repo"),
            repo.as_os_str(),
            os("--keys"),
            keys.as_os_str(),
            out.as_os_str(),
        ])?;
    }
    let medium = work.join("medium.squashfs");
    flipside_image_builder::rootfs::make_squashfs(&top, &medium).map_err(|e| {
        Error::ToolOutput {
            command: "mksquashfs".into(),
            output: e.to_string(),
        }
    })?;
    Ok((medium, root_json))
}

/// The `/init` of a broken initramfs: it reports itself and exits, so the kernel panics.
pub const BROKEN_INIT: &str = "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
    echo \"FLIPSIDE: initrd start kernel=$(/bin/busybox cat /proc/sys/kernel/osrelease)\"\n\
    echo \"FLIPSIDE: initrd broken action=exit\"\nexit 1\n";

/// The kernel of `release` and the initramfs its UKI carries: the kernel's own, or for a
/// release whose kernel panics a broken one written under `work`.
pub fn release_kernel<'a>(
    assets: &'a ArmAssets,
    release: &ArmRelease,
    work: &Path,
) -> Result<(&'a ArmKernel, PathBuf)> {
    let kernel = if release.old_kernel {
        assets.old_kernel()
    } else {
        assets.new_kernel()
    };
    if !release.kernel_panics {
        return Ok((kernel, kernel.initramfs.clone()));
    }
    let path = work.join(format!("arm-{}-broken.cpio.zst", release.version));
    initramfs::build_with_init(
        &initramfs::Inputs {
            busybox: assets.busybox.clone(),
            flipside_select: assets.flipside_select.clone(),
            flipside_verity: assets.flipside_verity.clone(),
            modules: Vec::new(),
        },
        BROKEN_INIT,
        &path,
    )?;
    Ok((kernel, path))
}

/// Builds `release`'s UKI under `work`: systemd's arm64 stub, the release's kernel, its
/// initramfs (or a broken one), [`UKI_CMDLINE`] and an os-release.
pub fn build_uki(assets: &ArmAssets, release: &ArmRelease, work: &Path) -> Result<PathBuf> {
    let (kernel, initrd) = release_kernel(assets, release, work)?;
    let out = work.join(format!("arm-{}.uki.efi", release.version));
    let os_release = uki::os_release("armapp", release.version, &release.version.to_string());
    uki::assemble(
        &uki::UkiParts {
            stub: &assets.stub,
            kernel: &kernel.image,
            initrd: &initrd,
            cmdline: UKI_CMDLINE,
            os_release: &os_release,
        },
        &out,
    )
    .map_err(|e| Error::Io {
        action: "assemble an arm64 UKI (flipside_image_builder::uki) at",
        path: out.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(out)
}

/// Bytes of each aarch64 kernel partition: the UKI is about 35 MB (Debian's arm64 `Image` is
/// not compressed, 33 MB; systemd 252's stub could not decompress it either).
pub const KERNEL_SIZE: u64 = 48 << 20;

/// Slot and data sizes of the aarch64 disk.
pub fn layout() -> DiskLayout {
    DiskLayout {
        slot_size: 32 << 20,
        data_size: 16 << 20,
    }
}

/// A fresh aarch64 disk `<name>.img` in `work`: root-a, root-b, data, esp (flipside-boot as
/// `\EFI\BOOT\BOOTAA64.EFI`), kernel-a, kernel-b ([`KERNEL_SIZE`] each); both slots
/// P=0 T=0 S=0.
pub fn disk(assets: &ArmAssets, work: &Path, name: &str) -> Result<TestDisk> {
    let path = work.join(format!("{name}.img"));
    let disk = TestDisk::create_with(&path, &layout(), None, &uefi::partitions_with(KERNEL_SIZE))?;
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

/// Writes `root` and `uki` into `slot`'s root and kernel partitions.
pub fn write_release(disk: &TestDisk, slot: Slot, root: &Path, uki: &Path) -> Result<()> {
    disk.write_slot(slot, root)?;
    disk.write_partition(&uefi::kernel_label(slot), uki)
}

/// A VM booting `disk` through U-Boot, logging as `name` into `log_dir`; the guest's reboots
/// reset it.
pub fn vm_config(log_dir: &Path, name: &str, disk: &TestDisk) -> VmConfig {
    vm_config_with(log_dir, name, disk, None)
}

/// [`vm_config`] with `medium` as a second, read-only disk (`/dev/vdb` in the guest).
pub fn vm_config_with(
    log_dir: &Path,
    name: &str,
    disk: &TestDisk,
    medium: Option<&Path>,
) -> VmConfig {
    VmConfig {
        machine: Machine::ArmVirt {
            bios: PathBuf::from(U_BOOT),
            medium: medium.map(Path::to_path_buf),
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

/// The boot stages of one aarch64 boot, seconds since QEMU started (or since the reset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArmStages {
    /// U-Boot's banner.
    pub u_boot: Option<f64>,
    /// `flipside-boot: start`.
    pub flipside_boot: Option<f64>,
    /// `flipside-boot: boot`: the UKI is handed to LoadImage.
    pub load_kernel: Option<f64>,
    /// `FLIPSIDE: initrd start`.
    pub initrd: Option<f64>,
    /// `FLIPSIDE: system up`.
    pub system: Option<f64>,
    /// `FLIPSIDE: system end`.
    pub end: Option<f64>,
}

/// [`ArmStages`] of every boot in timeline text (`   1.234s line`); a boot starts at each
/// U-Boot banner. Pure.
pub fn stages(timeline: &str) -> Vec<ArmStages> {
    let mut boots: Vec<ArmStages> = Vec::new();
    for line in timeline.lines() {
        let Some((secs, text)) = line.trim_start().split_once("s ") else {
            continue;
        };
        let Ok(secs) = secs.parse::<f64>() else {
            continue;
        };
        if text.starts_with("U-Boot 20") {
            boots.push(ArmStages {
                u_boot: Some(secs),
                ..ArmStages::default()
            });
            continue;
        }
        let Some(b) = boots.last_mut() else {
            continue;
        };
        let slot = if text.contains("flipside-boot: start") {
            &mut b.flipside_boot
        } else if text.contains("flipside-boot: boot ") {
            &mut b.load_kernel
        } else if text.contains("FLIPSIDE: initrd start") {
            &mut b.initrd
        } else if text.contains("FLIPSIDE: system up") {
            &mut b.system
        } else if text.contains("FLIPSIDE: system end") {
            &mut b.end
        } else {
            continue;
        };
        slot.get_or_insert(secs);
    }
    boots
}

impl ArmStages {
    /// One line: each stage relative to U-Boot's banner of this boot.
    pub fn describe(&self) -> String {
        let base = self.u_boot.unwrap_or(0.0);
        let at = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.1}", t - base));
        format!(
            "u-boot at {base:.1} s, then flipside-boot +{} kernel handed over +{} \
             initramfs +{} system +{} end +{}",
            at(self.flipside_boot),
            at(self.load_kernel),
            at(self.initrd),
            at(self.system),
            at(self.end),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_abi_of_debian_packages() {
        assert_eq!(
            kernel_abi("linux-image-6.1.0-57-arm64:arm64"),
            Some(("linux-image-6.1.0", 57, "-arm64"))
        );
        assert_eq!(kernel_abi("linux-image-arm64"), None);
    }

    #[test]
    fn stages_per_boot() {
        let timeline = "   0.500s U-Boot 2023.01+dfsg-2+deb12u3 (Jun 22 2026)\n\
                        \x20  3.600s flipside-boot: start version=0.1.0\n\
                        \x20  3.900s flipside-boot: boot slot=b\n\
                        \x20  9.000s FLIPSIDE: initrd start kernel=6.1\n\
                        \x20 10.000s FLIPSIDE: system up name=armapp version=2 slot=b\n\
                        \x20 11.000s FLIPSIDE: system end action=reboot\n\
                        \x20 11.500s U-Boot 2023.01+dfsg-2+deb12u3 (Jun 22 2026)\n\
                        \x20 15.000s flipside-boot: start version=0.1.0\n";
        let s = stages(timeline);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].flipside_boot, Some(3.6));
        assert_eq!(s[0].end, Some(11.0));
        assert_eq!(s[1].u_boot, Some(11.5));
        assert_eq!(s[1].system, None);
        assert!(s[0].describe().contains("system +9.5"));
    }

    #[test]
    fn init_runs_health_only_on_trial() {
        let s = init_script(2);
        let trial = s
            .find("if [ \"$FLIPSIDE_TRIAL\" = 1 ]; then")
            .expect("a trial branch");
        let health = s.find("\tflipside health\n").expect("flipside health");
        let poweroff = s.rfind("poweroff -f").expect("a poweroff");
        assert!(trial < health && health < poweroff);
        assert!(s.contains("FLIPSIDE: system up"));
        let c: toml::Value = toml::from_str(&config_toml()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c["device"]["disk"].as_str(), Some("/dev/vda"));
    }
}
