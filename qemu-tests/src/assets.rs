//! The VM assets, installed by the harness itself and cached under `<target>/qemu-assets/`:
//!
//! | asset | from | cached as |
//! |---|---|---|
//! | kernel + modules | `apt-get download linux-image-<release>`, `dpkg -x` | `kernel/<release>/` |
//! | static busybox | `/bin/busybox` when static, else `apt-get download busybox-static` | `busybox/` |
//! | static flipside-select | `cargo build --release --target x86_64-unknown-linux-gnu` with `+crt-static` | `cargo-static/` |
//! | static flipside (updater), on first use | the same | `cargo-static/` |
//! | flipside-build | `cargo build --release -p flipside-image-builder` | `cargo/` |
//! | flipside-boot (UEFI), on first use | `cargo build --release -p flipside-boot --target x86_64-unknown-uefi` | `cargo-uefi/` |
//! | initramfs | [`crate::initramfs`] | `initramfs.cpio.zst` |
//!
//! Every step is idempotent: a cached kernel is reused, cargo rebuilds only what changed, and
//! the initramfs is rebuilt (reproducibly) on each run. [`Assets::get`] prepares them once per
//! process; `flipside-build` is built on first use.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::initramfs;
use crate::kernel::{self, Kernel};
use crate::once::get_or_build;
use crate::paths;
use crate::tool;

/// The host triple flipside-select is linked statically for.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Everything a VM boots from.
#[derive(Debug)]
pub struct Assets {
    /// `<target>/qemu-assets`.
    pub dir: PathBuf,
    pub kernel: Kernel,
    /// A static busybox (x86-64).
    pub busybox: PathBuf,
    /// A static flipside-select.
    pub flipside_select: PathBuf,
    /// A static `flipside-verity` (the initramfs opens dm-verity roots with it).
    pub flipside_verity: PathBuf,
    /// The compressed initramfs.
    pub initramfs: PathBuf,
    flipside_build: OnceLock<PathBuf>,
    flipside: OnceLock<PathBuf>,
    flipside_boot: OnceLock<PathBuf>,
}

static ASSETS: OnceLock<Assets> = OnceLock::new();
static PREPARING: Mutex<()> = Mutex::new(());
static BUILDING: Mutex<()> = Mutex::new(());

impl Assets {
    /// The assets, prepared on first call in this process (later calls share them).
    pub fn get() -> Result<&'static Assets> {
        get_or_build(&ASSETS, &PREPARING, || prepare(&paths::assets_dir()))
    }

    /// The `flipside-build` binary, built (release) on first use.
    pub fn flipside_build(&self) -> Result<&Path> {
        let bin = get_or_build(&self.flipside_build, &BUILDING, || {
            let target = self.dir.join("cargo");
            cargo_build(
                &["-p", "flipside-image-builder", "--bin", "flipside-build"],
                &target,
                None,
            )?;
            Ok(target.join("release/flipside-build"))
        })?;
        Ok(bin)
    }
}

impl Assets {
    /// The updater, `flipside`, linked statically (it runs inside the appliance images),
    /// built on first use in the same target directory as flipside-select.
    pub fn flipside(&self) -> Result<&Path> {
        let bin = get_or_build(&self.flipside, &BUILDING, || {
            // FLIPSIDE_QEMU_FLIPSIDE=PATH: a static flipside built elsewhere (another revision).
            match std::env::var_os("FLIPSIDE_QEMU_FLIPSIDE") {
                Some(path) => {
                    let path = PathBuf::from(path);
                    require_static(&path, "FLIPSIDE_QEMU_FLIPSIDE must name a static flipside")?;
                    Ok(path)
                }
                // With the test-only stop between the GPT copies (`gpt-pause`): inert unless
                // a scenario sets FLIPSIDE_TEST_GPT_PAUSE in the guest.
                None => static_build(&self.dir, "flipside-updater", "flipside", &["gpt-pause"]),
            }
        })?;
        Ok(bin)
    }
}

/// The UEFI target flipside-boot is built for.
pub const UEFI_TARGET: &str = "x86_64-unknown-uefi";

impl Assets {
    /// flipside-boot, the UEFI boot manager (`flipside-boot.efi`), built on first use in its
    /// own target directory. Needs `rustup target add x86_64-unknown-uefi` (scripts/setup.sh).
    pub fn flipside_boot(&self) -> Result<&Path> {
        let bin = get_or_build(&self.flipside_boot, &BUILDING, || {
            let target = self.dir.join("cargo-uefi");
            cargo_build(
                &["-p", "flipside-boot", "--target", UEFI_TARGET],
                &target,
                None,
            )?;
            Ok(target
                .join(UEFI_TARGET)
                .join("release")
                .join("flipside-boot.efi"))
        })?;
        Ok(bin)
    }
}

/// Prepares every asset under `dir` (see the module docs).
pub fn prepare(dir: &Path) -> Result<Assets> {
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let kernel = kernel::prepare(dir)?;
    let busybox = static_busybox(dir)?;
    let flipside_select = static_flipside_select(dir)?;
    let flipside_verity = static_build(dir, "flipside-verity", "flipside-verity", &[])?;
    let initramfs = dir.join("initramfs.cpio.zst");
    initramfs::build(
        &initramfs::Inputs {
            busybox: busybox.clone(),
            flipside_select: flipside_select.clone(),
            flipside_verity: flipside_verity.clone(),
            modules: kernel.modules.clone(),
        },
        &initramfs,
    )?;
    Ok(Assets {
        dir: dir.to_path_buf(),
        kernel,
        busybox,
        flipside_select,
        flipside_verity,
        initramfs,
        flipside_build: OnceLock::new(),
        flipside: OnceLock::new(),
        flipside_boot: OnceLock::new(),
    })
}

/// Fails unless `path` is a static x86-64 program.
fn require_static(path: &Path, hint: &'static str) -> Result<()> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    match crate::elf::static_x86_64_problem(&bytes) {
        None => Ok(()),
        Some(why) => Err(Error::NotStatic {
            path: path.to_path_buf(),
            why,
            hint,
        }),
    }
}

/// The host's busybox when it is the static build, else busybox-static unpacked into the
/// cache (without installing it).
pub fn static_busybox(dir: &Path) -> Result<PathBuf> {
    let host = Path::new("/bin/busybox");
    if fs::read(host).is_ok_and(|b| crate::elf::static_x86_64_problem(&b).is_none()) {
        return Ok(host.to_path_buf());
    }
    let out = dir.join("busybox");
    let bin = out.join("bin/busybox");
    if !bin.is_file() {
        let work = tempfile::Builder::new()
            .prefix(".busybox-")
            .tempdir_in(dir)
            .map_err(Error::io("create a directory in", dir))?;
        let tree = tool::unpack_deb("busybox-static", work.path(), "apt")?;
        let staged = tree.join("bin/busybox");
        let staged = if staged.is_file() {
            staged
        } else {
            tree.join("usr/bin/busybox")
        };
        fs::create_dir_all(out.join("bin")).map_err(Error::io("create directory", &out))?;
        fs::copy(&staged, &bin).map_err(Error::io("copy", &staged))?;
    }
    require_static(
        &bin,
        "the busybox-static package should hold a static busybox",
    )?;
    Ok(bin)
}

/// flipside-select linked statically, built in a target directory of its own so that its
/// RUSTFLAGS never invalidate the normal build.
fn static_flipside_select(dir: &Path) -> Result<PathBuf> {
    static_build(dir, "flipside-bootloader-hooks", "flipside-select", &[])
}

/// `bin` of `package` with `features` linked statically into `<dir>/cargo-static`.
fn static_build(dir: &Path, package: &str, bin: &str, features: &[&str]) -> Result<PathBuf> {
    let target = dir.join("cargo-static");
    let features = features.join(",");
    let mut args = vec!["-p", package, "--bin", bin, "--target", STATIC_TARGET];
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    cargo_build(&args, &target, Some("-C target-feature=+crt-static"))?;
    let path = target.join(STATIC_TARGET).join("release").join(bin);
    require_static(
        &path,
        "build it with RUSTFLAGS='-C target-feature=+crt-static' for x86_64-unknown-linux-gnu",
    )?;
    Ok(path)
}

/// `cargo build --release ARGS` in the workspace, into `target_dir`.
fn cargo_build(args: &[&str], target_dir: &Path, rustflags: Option<&str>) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .args(args)
        .current_dir(paths::workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags of the outer build must not leak into (and invalidate) this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if let Some(flags) = rustflags {
        cmd.env("RUSTFLAGS", flags);
    }
    eprintln!("qemu-tests: {}", tool::describe(&cmd));
    tool::run(&mut cmd, "cargo (rustup)")?;
    Ok(())
}
