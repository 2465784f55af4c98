//! The aarch64 chain with real reboots: U-Boot's UEFI -> flipside-boot (`BOOTAA64.EFI` on the
//! ESP) -> the slot's unified kernel image from `kernel-a`/`kernel-b` (systemd's arm64 stub,
//! Debian's arm64 kernel, the qemu-tests initramfs) -> systemd of the Debian arm64 appliance
//! ([`debian`] with [`Architecture::Aarch64`]), updated over the network by the static aarch64
//! `flipside` (the shipped `flipside-update.service`) from a repository made by
//! `flipside-build image` and `flipside-build repo add`. The image, its report unit, the step
//! loop and the network are those of the x86-64 chain ([`chain::variant_for`]); only the
//! architecture, the kernel part and the firmware differ.
//!
//! | release | kernel part | root |
//! |---|---|---|
//! | 1 | the older arm64 kernel build + its initramfs | Debian arm64 appliance 1 |
//! | 2 | the current arm64 kernel build + its initramfs | appliance 2 |
//! | 3 | as 2 | appliance 3, whose own health check fails |
//! | 4 | the current kernel + an initramfs whose `/init` exits: the kernel panics | appliance 4 |
//! | 5 | as 2 | appliance 5, labelled `x86_64`, in a repository of its own (same keys) |
//!
//! Repository snapshots: releases 1..=N for N = 2, 3, 4 ([`chain::UpTo`]), hard-linked (the
//! repository never rewrites a file in place), and the foreign one. [`ArmWorld::get`] builds
//! everything once and caches it under `<assets>/arm64/chain-<key>/`, keyed by every input
//! and the day.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use flipside_bootloader_hooks::Slot;
use flipside_contract::arch::Architecture;
use sha2::{Digest, Sha256};

use crate::arm::{self, ArmAssets, ArmKernel};
use crate::chain::{self, KernelPart, UpTo, BROKEN_INIT};
use crate::debian::{self, Base, Programs};
use crate::disk::{DiskLayout, TestDisk};
use crate::error::{Error, Result};
use crate::initramfs;
use crate::once::get_or_build;
use crate::ota::GUEST_PORT;
use crate::paths;
use crate::server::UpdateServer;
use crate::tool;
use crate::uefi::kernel_label;
use crate::vm::{GuestFwd, Vm, VmConfig};

/// Version of how the world is built, part of the cache key.
const FORMAT: &str = "arm-chain-world-2";
/// Memory of an aarch64 chain VM: U-Boot, a 40 MB UKI read by flipside-boot, systemd.
pub const MEMORY_MIB: u32 = 768;
/// Upper bound of one U-Boot + systemd boot under aarch64 TCG on a busy 2-core machine; a
/// guard, not a measurement.
pub const BOOT: Duration = Duration::from_secs(300);
/// Upper bound of a boot that also installs a release.
pub const INSTALL_BOOT: Duration = Duration::from_secs(480);

/// One release of the aarch64 chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: u64,
    pub kernel: KernelPart,
    /// The release's own health check fails: `flipside-health.service` marks the slot bad.
    pub health_fails: bool,
    /// What the release says it is built for.
    pub architecture: Architecture,
}

impl Release {
    const fn good(version: u64, kernel: KernelPart) -> Self {
        Self {
            version,
            kernel,
            health_fails: false,
            architecture: Architecture::Aarch64,
        }
    }
}

/// The releases of the aarch64 chain (see the module docs).
pub const RELEASES: &[Release] = &[
    Release::good(1, KernelPart::Older),
    Release::good(2, KernelPart::Current),
    Release {
        health_fails: true,
        ..Release::good(3, KernelPart::Current)
    },
    Release::good(4, KernelPart::CurrentInitExits),
    Release {
        architecture: Architecture::X86_64,
        ..Release::good(5, KernelPart::Current)
    },
];

/// The release published for another architecture.
pub const FOREIGN: u64 = 5;

/// The health check release 3 adds: the appliance's service never comes up. Pure.
pub fn failing_check() -> (String, String, u32) {
    (
        "etc/flipside/health.d/30-service".into(),
        "#!/bin/sh\n# qemu-tests: the appliance's service of this release does not come up.\n\
         echo 'appliance service did not start' >&2\nexit 1\n"
            .into(),
        0o755,
    )
}

/// The image variant of a release: the chain's ([`chain::variant_for`]) with the arm64 kernel
/// part, the release's architecture and, for release 3, [`failing_check`].
pub fn variant(release: &Release, kernel_section: &str) -> debian::Variant {
    let mut v = chain::variant_for(release.architecture, kernel_section);
    if release.health_fails {
        v.files.push(failing_check());
    }
    v
}

/// The built releases and snapshots.
#[derive(Debug)]
pub struct ArmWorld {
    pub dir: PathBuf,
    /// The older kernel (release 1's).
    pub older: ArmKernel,
    /// The current kernel (the others').
    pub current: ArmKernel,
}

static WORLD: OnceLock<ArmWorld> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

impl ArmWorld {
    /// The world, built on first use (or found in the cache).
    pub fn get(assets: &ArmAssets) -> Result<&'static ArmWorld> {
        get_or_build(&WORLD, &BUILDING, || build_or_load(assets))
    }

    /// What `flipside-build image` wrote for release `version`.
    pub fn release_dir(&self, version: u64) -> PathBuf {
        self.dir.join("releases").join(version.to_string())
    }

    /// The root image of a release.
    pub fn image(&self, version: u64) -> PathBuf {
        self.release_dir(version)
            .join(format!("{}-{version}.squashfs", debian::NAME))
    }

    /// The UKI of a release (`uki.efi`).
    pub fn uki(&self, version: u64) -> PathBuf {
        self.release_dir(version).join("uki.efi")
    }

    /// `uname -r` of a release's kernel.
    pub fn kernel_release(&self, version: u64) -> &str {
        match release(version).map(|r| r.kernel) {
            Some(KernelPart::Older) => &self.older.release,
            _ => &self.current.release,
        }
    }

    /// A snapshot holding releases 1..=N.
    pub fn repo(&self, snapshot: UpTo) -> PathBuf {
        self.dir.join("repos").join(format!("r{}", snapshot.0))
    }

    /// The repository holding only the foreign release (signed by the same keys).
    pub fn foreign_repo(&self) -> PathBuf {
        self.dir.join("repos/foreign")
    }
}

fn release(version: u64) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.version == version)
}

/// The `[kernel]` section of a release: the arm64 `Image`, the initramfs, the arm64 command
/// line and stub, and the release (an arm64 `Image` does not name its own). Pure.
pub fn kernel_section(kernel: &ArmKernel, initrd: &Path, stub: &Path) -> String {
    chain::kernel_section_with(
        &kernel.image,
        initrd,
        arm::UKI_CMDLINE,
        Some((stub, &kernel.release)),
    )
}

fn build_or_load(assets: &ArmAssets) -> Result<ArmWorld> {
    let base = Base::for_architecture(Architecture::Aarch64, &assets.dir)?;
    let builder = arm::flipside_build()?;
    let (current, older) = (assets.new_kernel().clone(), assets.old_kernel().clone());
    let initrd_broken = assets
        .dir
        .join(format!("initramfs-{}-init-exits.cpio.zst", current.release));
    initramfs::build_with_init(
        &initramfs::Inputs {
            busybox: assets.busybox.clone(),
            flipside_select: assets.flipside_select.clone(),
            flipside_verity: assets.flipside_verity.clone(),
            modules: current.modules.clone(),
        },
        BROKEN_INIT,
        &initrd_broken,
    )?;
    let section = |part: KernelPart| match part {
        KernelPart::Older => kernel_section(&older, &older.initramfs, &assets.stub),
        KernelPart::Current => kernel_section(&current, &current.initramfs, &assets.stub),
        KernelPart::CurrentInitExits => kernel_section(&current, &initrd_broken, &assets.stub),
    };

    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(base.dir.to_string_lossy().as_bytes());
    for p in [
        &assets.flipside,
        &builder,
        &older.image,
        &current.image,
        &older.initramfs,
        &current.initramfs,
        &initrd_broken,
        &assets.stub,
    ] {
        h.update(fs::read(p).map_err(Error::io("read", p))?);
    }
    h.update(chain::config_toml());
    h.update(chain::report_script());
    h.update(chain::network_unit());
    for r in RELEASES {
        h.update(format!("{r:?}"));
        h.update(section(r.kernel));
        h.update(format!("{:?}", variant(r, "").files));
    }
    h.update(Utc::now().date_naive().to_string());
    let key = hex::encode(&h.finalize()[..8]);
    let dir = assets.dir.join(format!("chain-{key}"));
    let world = ArmWorld {
        dir: dir.clone(),
        older: older.clone(),
        current: current.clone(),
    };
    if dir.join("complete").exists() {
        return Ok(world);
    }
    let started = Instant::now();
    eprintln!(
        "qemu-tests: building the aarch64 chain releases (kernels {} and {}) in {}",
        older.release,
        current.release,
        dir.display()
    );
    let tmp = assets
        .dir
        .join(format!("chain-{key}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
    }
    let (repo, keys) = (tmp.join("repo"), tmp.join("keys"));
    let foreign = tmp.join("repos/foreign");
    fs::create_dir_all(tmp.join("repos")).map_err(Error::io("create directory", &tmp))?;
    fs::create_dir_all(tmp.join("releases")).map_err(Error::io("create directory", &tmp))?;
    chain::repo_init(&builder, &repo, &keys)?;
    // The foreign release's repository: the same keys, so the devices trust it.
    chain::repo_init(&builder, &foreign, &keys)?;
    let root = repo.join("metadata/1.root.json");
    let root_json = fs::read_to_string(&root).map_err(Error::io("read", &root))?;
    let work = tmp.join("work");
    fs::create_dir_all(&work).map_err(Error::io("create directory", &work))?;
    let programs = Programs {
        flipside: &assets.flipside,
        builder: &builder,
    };
    for r in RELEASES {
        let built = debian::build_with(
            &programs,
            base,
            r.version,
            &root_json,
            &work,
            &variant(r, &section(r.kernel)),
        )?;
        eprintln!(
            "qemu-tests: aarch64 chain release {}: stage+store add {:.1} s, image {:.1} s",
            r.version,
            built.staged_in.as_secs_f64(),
            built.imaged_in.as_secs_f64()
        );
        let out = tmp.join("releases").join(r.version.to_string());
        fs::rename(&built.out, &out).map_err(Error::io("move", &built.out))?;
        if r.version == FOREIGN {
            chain::repo_add(&builder, &foreign, &keys, &out)?;
            continue;
        }
        chain::repo_add(&builder, &repo, &keys, &out)?;
        if r.version >= 2 {
            let snap = tmp.join("repos").join(format!("r{}", r.version));
            // Hard links: the repository writes new files and renames, never in place.
            tool::run(
                Command::new("cp").arg("-al").arg(&repo).arg(&snap),
                "coreutils",
            )?;
        }
    }
    fs::remove_dir_all(&work).map_err(Error::io("remove", &work))?;
    fs::write(tmp.join("complete"), "").map_err(Error::io("write", tmp.join("complete")))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
    }
    fs::rename(&tmp, &dir).map_err(Error::io("rename into place", &dir))?;
    eprintln!(
        "qemu-tests: aarch64 chain world built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(world)
}

/// The aarch64 chain disk: the Debian slots and a small data partition, then the ESP
/// (flipside-boot as `BOOTAA64.EFI`) and kernel partitions of [`arm::KERNEL_SIZE`].
pub fn disk_layout() -> DiskLayout {
    chain::disk_layout()
}

/// One aarch64 chain scenario's rig: logs, scratch directory, world, update server, disk.
pub struct Rig {
    pub assets: &'static ArmAssets,
    pub world: &'static ArmWorld,
    pub server: UpdateServer,
    pub disk: TestDisk,
    /// `<target>/qemu-logs/<test>/` (emptied first).
    pub logs: PathBuf,
    /// A static x86-64 busybox on the host: `guestfwd` runs its `nc` per connection.
    host_busybox: PathBuf,
    work: tempfile::TempDir,
}

impl Rig {
    /// A fresh rig for `test`.
    pub fn new(test: &str) -> Result<Self> {
        let assets = ArmAssets::get()?;
        let world = ArmWorld::get(assets)?;
        let logs = paths::logs_dir(test);
        if logs.exists() {
            fs::remove_dir_all(&logs).map_err(Error::io("empty", &logs))?;
        }
        fs::create_dir_all(&logs).map_err(Error::io("create directory", &logs))?;
        let work = tempfile::Builder::new()
            .prefix(&format!("flipside-qemu-{test}-"))
            .disable_cleanup(std::env::var_os("FLIPSIDE_QEMU_KEEP").is_some())
            .tempdir()
            .map_err(Error::io(
                "create a scratch directory in",
                std::env::temp_dir(),
            ))?;
        let disk = arm::disk_with(assets, work.path(), "disk", &disk_layout())?;
        let host_busybox = crate::assets::static_busybox(&paths::assets_dir())?;
        Ok(Self {
            assets,
            world,
            server: UpdateServer::start()?,
            disk,
            logs,
            host_busybox,
            work,
        })
    }

    /// The scratch directory.
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// Writes release `version` (root image and UKI) into `slot` with boot bits
    /// `(priority, tries, successful)`: the factory's provisioning.
    pub fn provision(&self, slot: Slot, version: u64, bits: (u8, u8, bool)) -> Result<()> {
        self.disk.write_slot(slot, &self.world.image(version))?;
        self.disk
            .write_partition(&kernel_label(slot), &self.world.uki(version))?;
        self.disk.set_slot(slot, bits.0, bits.1, bits.2)
    }

    /// A VM booting the disk through U-Boot, on the network that reaches only the update
    /// server; reboots reset the VM.
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let mut cfg = arm::vm_config(&self.logs, name, &self.disk);
        cfg.memory_mib = MEMORY_MIB;
        cfg.network = Some(GuestFwd {
            guest_port: GUEST_PORT,
            host_port: self.server.port(),
            busybox: self.host_busybox.clone(),
        });
        cfg
    }

    /// Starts a VM of [`Rig::vm_config`] (TCG).
    pub fn start(&self, name: &str) -> Result<Vm> {
        arm::start(&self.vm_config(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_cover_the_scenarios() {
        assert_eq!(
            RELEASES.iter().map(|r| r.version).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(RELEASES.iter().filter(|r| r.health_fails).count(), 1);
        assert_eq!(
            release(FOREIGN).map(|r| r.architecture),
            Some(Architecture::X86_64)
        );
        let v = variant(&RELEASES[2], "image = \"/i\"\n");
        assert!(v.files.contains(&failing_check()));
        assert_eq!(v.architecture, Architecture::Aarch64);
        assert_eq!(variant(&RELEASES[4], "").architecture, Architecture::X86_64);
    }

    #[test]
    fn failing_check_is_valid_sh_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (_, text, _) = failing_check();
        let p = dir.path().join("check");
        fs::write(&p, text).unwrap();
        let st = Command::new("sh").arg(&p).status().unwrap();
        assert_eq!(st.code(), Some(1));
    }

    #[test]
    fn kernel_section_names_stub_and_release() {
        let k = ArmKernel {
            release: "6.1.0-57-arm64".into(),
            image: "/k/Image".into(),
            modules: Vec::new(),
            initramfs: "/k/i.cpio.zst".into(),
        };
        let s = kernel_section(&k, Path::new("/i"), Path::new("/s/linuxaa64.efi.stub"));
        let v: toml::Value = toml::from_str(&s).unwrap();
        assert_eq!(v["image"].as_str(), Some("/k/Image"));
        assert_eq!(v["cmdline"].as_str(), Some(arm::UKI_CMDLINE));
        assert_eq!(v["stub"].as_str(), Some("/s/linuxaa64.efi.stub"));
        assert_eq!(v["release"].as_str(), Some("6.1.0-57-arm64"));
    }
}
