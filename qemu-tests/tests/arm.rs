//! flipside on aarch64: `qemu-system-aarch64 -machine virt` under TCG with Debian's U-Boot as
//! firmware. U-Boot's UEFI runs flipside-boot from the ESP (`\EFI\BOOT\BOOTAA64.EFI`), which
//! applies the slot rules to the GPT bits, records a consumed try through U-Boot's block I/O,
//! and starts the slot's unified kernel image (systemd's arm64 stub, Debian's arm64 kernel);
//! the initramfs mounts the slot; on a trial boot the static aarch64 `flipside health` commits
//! the slot or marks it bad. Guest reboots reset the VM: real reboot cycles through U-Boot.
//!
//! Behind the `aarch64` feature (`scripts/test-arm.sh`): see qemu-tests/README.md. Serial logs
//! and timelines stay in `<target>/qemu-logs/<test>/`; each test prints `ARM-STAGES` lines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::arm::{self, ArmAssets, ArmRelease, Health};
use flipside_qemu_tests::markers::Boot;
use flipside_qemu_tests::{paths, BootSummary, Error, QemuExit, Result, TestDisk, Vm};

/// A test's scratch directory and log directory (emptied first).
struct Bed {
    assets: &'static ArmAssets,
    logs: PathBuf,
    work: tempfile::TempDir,
}

impl Bed {
    fn new(test: &str) -> Result<Self> {
        let assets = ArmAssets::get()?;
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
        Ok(Self { assets, logs, work })
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    /// Writes `release`'s root and UKI into `slot`.
    fn install(&self, disk: &TestDisk, slot: Slot, release: &ArmRelease) -> Result<()> {
        let root = arm::build_root(self.assets, release, self.work(), None)?;
        let uki = arm::build_uki(self.assets, release, self.work())?;
        arm::write_release(disk, slot, &root, &uki)
    }

    /// What the updater does to install into `slot` (ChromeOS order): clear the slot, write
    /// root and kernel, then arm it for 2 trial boots at top priority with the other slot
    /// below. Done by the host while QEMU is stopped.
    fn update(&self, disk: &TestDisk, slot: Slot, release: &ArmRelease) -> Result<()> {
        disk.set_slot(slot, 0, 0, false)?;
        self.install(disk, slot, release)?;
        disk.set_slot(!slot, 1, 0, true)?;
        disk.set_slot(slot, 2, 2, false)
    }

    /// One QEMU run of `disk` until the guest powers off; prints each boot's stage times.
    fn run(&self, name: &str, disk: &TestDisk, boots: u32) -> Result<(Vm, QemuExit)> {
        let cfg = arm::vm_config(&self.logs, name, disk);
        let started = Instant::now();
        let mut vm = arm::start(&cfg)?;
        let exit = vm.wait_exit(arm::BOOT_TIMEOUT * boots)?;
        let timeline = self.logs.join(format!("{name}.timeline.log"));
        let text = fs::read_to_string(&timeline).unwrap_or_default();
        for (i, s) in arm::stages(&text).iter().enumerate() {
            eprintln!("ARM-STAGES {name} boot {}: {}", i + 1, s.describe());
        }
        eprintln!(
            "ARM-RUN {name}: {} boots in {:.1} s ({})",
            vm.boots().len(),
            started.elapsed().as_secs_f64(),
            timeline.display()
        );
        Ok((vm, exit))
    }
}

/// The kernel release the system reported.
fn kernel_release(boot: &Boot) -> Option<String> {
    boot.find("system", "kernel")?
        .get("release")
        .map(str::to_string)
}

fn summaries(vm: &Vm) -> Vec<BootSummary> {
    vm.boots().iter().map(Boot::summary).collect()
}

#[test]
fn cross_built_programs_run_under_qemu_user() -> Result<()> {
    let assets = ArmAssets::get()?;
    let run = |bin: &Path, arg: &str| -> Result<String> {
        let out = Command::new("qemu-aarch64-static")
            .arg(bin)
            .arg(arg)
            .output()
            .map_err(Error::io(
                "run qemu-aarch64-static (qemu-user-static) on",
                bin,
            ))?;
        assert!(
            out.status.success(),
            "{} {arg}: {} {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let version = run(&assets.flipside, "--version")?;
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "flipside --version: {version}"
    );
    let help = run(&assets.flipside_select, "--help")?;
    assert!(help.contains("--disk"), "flipside-select --help: {help}");
    // flipside-boot is a PE32+ application for arm64 (COFF machine 0xaa64).
    let efi = fs::read(&assets.flipside_boot).map_err(Error::io("read", &assets.flipside_boot))?;
    let pe = u32::from_le_bytes([efi[0x3c], efi[0x3d], efi[0x3e], efi[0x3f]]) as usize;
    assert_eq!(&efi[pe..pe + 4], b"PE\0\0");
    assert_eq!(u16::from_le_bytes([efi[pe + 4], efi[pe + 5]]), 0xaa64);
    Ok(())
}

#[test]
fn arm_update_changes_kernel_and_root_and_commits() -> Result<()> {
    let bed = Bed::new("arm_update_changes_kernel_and_root_and_commits")?;
    let disk = arm::disk(bed.assets, bed.work(), "disk")?;
    bed.install(&disk, Slot::A, &ArmRelease::good(1, true))?;
    disk.set_slot(Slot::A, 1, 0, true)?;

    // v1 runs from a with the older kernel.
    let (vm, exit) = bed.run("v1", &disk, 1)?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [BootSummary::system(Slot::A, false, 0, 1, "poweroff")],
        "{log}"
    );
    let boots = vm.boots();
    assert_eq!(
        boots[0].firmware_events(),
        ["start", "select slot=a", "kernel slot=a", "boot slot=a"],
        "{log}"
    );
    let old = kernel_release(&boots[0]);
    assert_eq!(
        old.as_deref(),
        Some(bed.assets.old_kernel().release.as_str())
    );
    assert_eq!(exit, QemuExit::PoweredOff);

    // v2 (the newer kernel and a new root) goes into b, armed for two trial boots.
    bed.update(&disk, Slot::B, &ArmRelease::good(2, false))?;
    let (vm, exit) = bed.run("v2", &disk, 2)?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::B, true, 1, 2, "reboot"),
            BootSummary::system(Slot::B, false, 0, 2, "poweroff"),
        ],
        "trial boot committed by flipside health, then b proven; {log}"
    );
    let boots = vm.boots();
    let commit = boots[0].find("boot", "commit").expect(&log);
    assert_eq!(commit.get("attrs"), Some("P=2,T=1,S=0"), "{log}");
    let health = boots[0].find("updater", "health").expect(&log);
    assert_eq!(health.get("code"), Some("0"), "{log}");
    for boot in &boots {
        assert_eq!(
            kernel_release(boot).as_deref(),
            Some(bed.assets.new_kernel().release.as_str()),
            "{log}"
        );
    }
    assert_ne!(
        bed.assets.new_kernel().release,
        bed.assets.old_kernel().release
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (2, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 0, true));
    Ok(())
}

#[test]
fn arm_device_installs_from_a_repository_and_commits() -> Result<()> {
    let bed = Bed::new("arm_device_installs_from_a_repository_and_commits")?;
    let builder = arm::flipside_build()?;
    // Release 2 (the newer kernel and a new root) built by flipside-build with its kernel
    // part, in a signed repository on an update medium (a second disk).
    let v2 = ArmRelease::good(2, false);
    let (medium, root_json) =
        arm::update_medium(bed.assets, &builder, std::slice::from_ref(&v2), bed.work())?;
    let disk = arm::disk(bed.assets, bed.work(), "disk")?;
    let v1 = ArmRelease::good(1, true);
    let root = arm::build_root(bed.assets, &v1, bed.work(), Some(&root_json))?;
    let uki = arm::build_uki(bed.assets, &v1, bed.work())?;
    arm::write_release(&disk, Slot::A, &root, &uki)?;
    disk.set_slot(Slot::A, 1, 0, true)?;

    let name = "install";
    let cfg = arm::vm_config_with(&bed.logs, name, &disk, Some(&medium));
    let started = Instant::now();
    let mut vm = arm::start(&cfg)?;
    let exit = vm.wait_exit(arm::BOOT_TIMEOUT * 3)?;
    let text =
        fs::read_to_string(bed.logs.join(format!("{name}.timeline.log"))).unwrap_or_default();
    for (i, s) in arm::stages(&text).iter().enumerate() {
        eprintln!("ARM-STAGES {name} boot {}: {}", i + 1, s.describe());
    }
    eprintln!(
        "ARM-RUN {name}: {} boots in {:.1} s",
        vm.boots().len(),
        started.elapsed().as_secs_f64()
    );
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::A, false, 0, 1, "reboot"),
            BootSummary::system(Slot::B, true, 1, 2, "reboot"),
            BootSummary::system(Slot::B, false, 0, 2, "poweroff"),
        ],
        "v1 installs v2 from the medium, v2's trial is committed, v2 boots proven; {log}"
    );
    let boots = vm.boots();
    let install = boots[0].find("updater", "install").expect(&log);
    assert_eq!(install.get("code"), Some("0"), "{log}");
    let health = boots[1].find("updater", "health").expect(&log);
    assert_eq!(health.get("code"), Some("0"), "{log}");
    let kernels: Vec<_> = boots.iter().map(kernel_release).collect();
    let (old, new) = (
        Some(bed.assets.old_kernel().release.clone()),
        Some(bed.assets.new_kernel().release.clone()),
    );
    assert_eq!(kernels, [old, new.clone(), new], "{log}");
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (2, 0, true));
    Ok(())
}

#[test]
fn arm_health_failure_rolls_back() -> Result<()> {
    let bed = Bed::new("arm_health_failure_rolls_back")?;
    let disk = arm::disk(bed.assets, bed.work(), "disk")?;
    bed.install(&disk, Slot::A, &ArmRelease::good(2, false))?;
    disk.set_slot(Slot::A, 1, 0, true)?;
    let v3 = ArmRelease {
        health: Health::Fails,
        ..ArmRelease::good(3, false)
    };
    bed.update(&disk, Slot::B, &v3)?;

    let (vm, exit) = bed.run("v3-health-fails", &disk, 2)?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::B, true, 1, 3, "reboot"),
            BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        ],
        "{log}"
    );
    let boots = vm.boots();
    assert!(
        boots[0].find("updater", "health").is_none(),
        "flipside marked b bad and rebooted before the init went on; {log}"
    );
    let end = boots[0].find("system", "end").expect(&log);
    assert_eq!(end.get("by"), Some("flipside"), "{log}");
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (0, 0, false));
    Ok(())
}

#[test]
fn arm_trial_kernel_that_panics_falls_back() -> Result<()> {
    let bed = Bed::new("arm_trial_kernel_that_panics_falls_back")?;
    let disk = arm::disk(bed.assets, bed.work(), "disk")?;
    bed.install(&disk, Slot::A, &ArmRelease::good(2, false))?;
    disk.set_slot(Slot::A, 1, 0, true)?;
    let v4 = ArmRelease {
        kernel_panics: true,
        ..ArmRelease::good(4, false)
    };
    bed.update(&disk, Slot::B, &v4)?;

    let (vm, exit) = bed.run("v4-kernel-panics", &disk, 3)?;
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(boots.len(), 3, "{log}");
    for (boot, tries_left) in boots.iter().take(2).zip(["1", "0"]) {
        let select = boot.find("boot", "select").expect(&log);
        assert_eq!(
            (select.get("slot"), select.get("tries_left")),
            (Some("b"), Some(tries_left)),
            "{log}"
        );
        assert!(boot.find("initrd", "broken").is_some(), "{log}");
        assert!(boot.find("system", "up").is_none(), "{log}");
    }
    assert_eq!(
        boots[2].summary(),
        BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        "flipside-boot fell back to a with no help; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    Ok(())
}
