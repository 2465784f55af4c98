//! flipside on aarch64: `qemu-system-aarch64 -machine virt` under TCG with Debian's U-Boot as
//! firmware. U-Boot's UEFI runs flipside-boot from the ESP (`\EFI\BOOT\BOOTAA64.EFI`), which
//! applies the slot rules to the GPT bits, records a consumed try through U-Boot's block I/O,
//! and starts the slot's unified kernel image (systemd's arm64 stub, Debian's arm64 kernel);
//! the initramfs mounts the slot. Each scenario is one QEMU run with real reboots (the guest's
//! reboots reset the VM, U-Boot starts again): the running system installs the next release
//! with the static aarch64 `flipside install` from a signed repository on an update medium (a
//! second disk), reboots into its trial, and `flipside health` commits it or marks it bad.
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

    /// A device running `running` from slot a (proven, P=1 S=1) with an update medium that
    /// holds a repository of `next`; one QEMU run until the guest powers off. Prints each
    /// boot's stage times.
    fn scenario(
        &self,
        name: &str,
        running: &ArmRelease,
        next: &ArmRelease,
        boots: u32,
    ) -> Result<(Vm, QemuExit, TestDisk)> {
        let builder = arm::flipside_build()?;
        let (medium, root_json) = arm::update_medium(
            self.assets,
            &builder,
            std::slice::from_ref(next),
            self.work(),
        )?;
        let disk = arm::disk(self.assets, self.work(), "disk")?;
        let root = arm::build_root(self.assets, running, self.work(), Some(&root_json))?;
        let uki = arm::build_uki(self.assets, running, self.work())?;
        arm::write_release(&disk, Slot::A, &root, &uki)?;
        disk.set_slot(Slot::A, 1, 0, true)?;

        let cfg = arm::vm_config_with(&self.logs, name, &disk, Some(&medium));
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
        Ok((vm, exit, disk))
    }
}

/// The slot in flipside-boot's FlipsideSlot variable as the booted system read it from
/// efivarfs (U-Boot's runtime GetVariable).
fn efivar_slot(boot: &Boot) -> Option<String> {
    boot.find("system", "efivar")?
        .get("slot")
        .map(str::to_string)
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

/// The first boot installed release `next` from the medium: `flipside install` exited 0 and
/// its result names slot b, `next` and `kernel`.
fn assert_installed(boot: &Boot, next: u64, kernel: &str, log: &str) {
    let install = boot.find("updater", "install").expect(log);
    assert_eq!(install.get("code"), Some("0"), "{log}");
    let result = boot.find("updater", "result").expect(log);
    assert_eq!(
        (
            result.get("slot"),
            result.get("version"),
            result.get("kernel")
        ),
        (Some("b"), Some(next.to_string().as_str()), Some(kernel)),
        "{log}"
    );
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
    let (old, new) = (
        bed.assets.old_kernel().release.clone(),
        bed.assets.new_kernel().release.clone(),
    );
    assert_ne!(old, new);
    let (vm, exit, disk) = bed.scenario(
        "update",
        &ArmRelease::good(1, true),
        &ArmRelease::good(2, false),
        3,
    )?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::A, false, 0, 1, "reboot"),
            BootSummary::system(Slot::B, true, 1, 2, "reboot"),
            BootSummary::system(Slot::B, false, 0, 2, "poweroff"),
        ],
        "v1 installs v2, v2's trial is committed, v2 boots proven; {log}"
    );
    let boots = vm.boots();
    assert_installed(&boots[0], 2, &new, &log);
    let commit = boots[1].find("boot", "commit").expect(&log);
    assert_eq!(commit.get("attrs"), Some("P=2,T=1,S=0"), "{log}");
    let health = boots[1].find("updater", "health").expect(&log);
    assert_eq!(health.get("code"), Some("0"), "{log}");
    let kernels: Vec<_> = boots.iter().map(kernel_release).collect();
    assert_eq!(
        kernels,
        [Some(old), Some(new.clone()), Some(new)],
        "the kernel changed with the root; {log}"
    );
    let efivars: Vec<_> = boots.iter().map(efivar_slot).collect();
    assert_eq!(
        efivars,
        [Some("a".into()), Some("b".into()), Some("b".into())],
        "the system reads flipside-boot's FlipsideSlot through U-Boot's runtime services; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (2, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 0, true));
    Ok(())
}

#[test]
fn arm_health_failure_rolls_back() -> Result<()> {
    let bed = Bed::new("arm_health_failure_rolls_back")?;
    let v3 = ArmRelease {
        health: Health::Fails,
        ..ArmRelease::good(3, false)
    };
    let (vm, exit, disk) = bed.scenario("health-fails", &ArmRelease::good(2, false), &v3, 3)?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::A, false, 0, 2, "reboot"),
            BootSummary::system(Slot::B, true, 1, 3, "reboot"),
            BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        ],
        "{log}"
    );
    let boots = vm.boots();
    assert_installed(&boots[0], 3, &bed.assets.new_kernel().release, &log);
    assert!(
        boots[1].find("updater", "health").is_none(),
        "flipside marked b bad and rebooted before the init went on; {log}"
    );
    let end = boots[1].find("system", "end").expect(&log);
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
    let v4 = ArmRelease {
        kernel_panics: true,
        ..ArmRelease::good(4, false)
    };
    let (vm, exit, disk) = bed.scenario("kernel-panics", &ArmRelease::good(2, false), &v4, 4)?;
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(boots.len(), 4, "{log}");
    assert_eq!(
        boots[0].summary(),
        BootSummary::system(Slot::A, false, 0, 2, "reboot"),
        "{log}"
    );
    assert_installed(&boots[0], 4, &bed.assets.new_kernel().release, &log);
    for (boot, tries_left) in boots[1..3].iter().zip(["1", "0"]) {
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
        boots[3].summary(),
        BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        "flipside-boot fell back to a with no help; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    Ok(())
}

#[test]
fn arm_device_refuses_a_release_for_another_architecture() -> Result<()> {
    let bed = Bed::new("arm_device_refuses_a_release_for_another_architecture")?;
    // Release 5 for the same hardware id, but built for x86_64.
    let v5 = ArmRelease {
        foreign_architecture: true,
        ..ArmRelease::good(5, false)
    };
    let (vm, exit, disk) = bed.scenario("foreign", &ArmRelease::good(2, false), &v5, 2)?;
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        summaries(&vm),
        [
            BootSummary::system(Slot::A, false, 0, 2, "reboot"),
            BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        ],
        "nothing was installed: a boots again; {log}"
    );
    let boots = vm.boots();
    let install = boots[0].find("updater", "install").expect(&log);
    assert_eq!(
        install.get("code"),
        Some("8"),
        "exit 8: no release for this device; {log}"
    );
    assert!(boots[0].find("updater", "result").is_none(), "{log}");
    let serial = fs::read_to_string(vm.serial_log()).map_err(Error::io("read", vm.serial_log()))?;
    assert!(
        serial.contains("architecture aarch64") && serial.contains("built for x86_64"),
        "the refusal names both architectures; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    Ok(())
}
