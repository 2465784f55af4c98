//! flipside on aarch64: `qemu-system-aarch64 -machine virt` under TCG with Debian's U-Boot as
//! firmware. U-Boot's UEFI runs flipside-boot from the ESP (`\EFI\BOOT\BOOTAA64.EFI`), which
//! applies the slot rules to the GPT bits, records a consumed try through U-Boot's block I/O,
//! and starts the slot's unified kernel image (systemd's arm64 stub, Debian's arm64 kernel);
//! the initramfs mounts the slot and systemd of the Debian arm64 appliance takes over. Each
//! scenario is one QEMU run with real reboots (the guest's reboots reset the VM, U-Boot starts
//! again): the running system installs the next release with the shipped
//! `flipside-update.service` (the static aarch64 `flipside`) from the host's update server,
//! reached over QEMU user networking (`guestfwd`, 127.0.0.1 only), reboots into its trial,
//! and `flipside-health.service` commits it or marks it bad.
//!
//! Behind the `aarch64` feature (`scripts/test-arm.sh`): see qemu-tests/README.md. Serial logs
//! and timelines stay in `<target>/qemu-logs/<test>/`; each test prints `SCENARIO` and
//! per-boot `STAGES` lines.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::arm::ArmAssets;
use flipside_qemu_tests::arm_chain::{Rig, BOOT, FOREIGN, INSTALL_BOOT};
use flipside_qemu_tests::chain::{self, assert_systemd_boot, Row, UpTo};
use flipside_qemu_tests::ota::{assert_fell_back, status_bits, OtaBoot};
use flipside_qemu_tests::server::Step;
use flipside_qemu_tests::{Error, QemuExit, Result, Vm};

/// Prints the scenario's wall time and the stage times of every boot of `vm`.
fn report(rig: &Rig, name: &str, vm: &Vm, started: Instant) {
    eprintln!(
        "SCENARIO {name} boots={} wall={:.1}",
        vm.boots().len(),
        started.elapsed().as_secs_f64()
    );
    let path = rig.logs.join(format!("{}.timeline.log", vm_name(vm)));
    let text = fs::read_to_string(&path).unwrap_or_default();
    for (i, s) in chain::stages(&text).iter().enumerate() {
        eprintln!("STAGES {name} boot {}: {}", i + 1, s.describe());
    }
}

fn vm_name(vm: &Vm) -> String {
    let log = vm.serial_log().file_name().unwrap_or_default();
    log.to_string_lossy()
        .trim_end_matches(".serial.log")
        .to_string()
}

fn rows(vm: &Vm) -> Vec<Row> {
    vm.boots().iter().map(Row::from_boot).collect()
}

/// Slot, version and kernel release of a boot's install result.
fn installed(boot: &OtaBoot) -> Option<Vec<&str>> {
    boot.installed(&["slot", "version", "kernel"])
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

/// v1 (older kernel) installs v2 (newer kernel and root together) over the network and
/// reboots; flipside-boot consumes a try and boots v2's UKI from kernel-b; `uname -r` is v2's
/// kernel; flipside-health.service commits; the next boot is v2 again, proven.
#[test]
fn arm_update_changes_kernel_and_root_and_commits() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("arm_update_changes_kernel_and_root_and_commits")?;
    let w = rig.world;
    let (k1, k2) = (w.kernel_release(1), w.kernel_release(2));
    assert_ne!(k1, k2, "two different kernel builds");
    rig.provision(Slot::A, 1, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &w.repo(UpTo(2))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("update")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT * 2)?;
    let log = vm.serial_log().display().to_string();
    report(&rig, "arm_update", &vm, started);

    assert_eq!(
        rows(&vm),
        [
            Row::new(Slot::A, false, 0, k1, Some(1), "reboot"),
            Row::new(Slot::B, true, 1, k2, Some(2), "reboot"),
            Row::new(Slot::B, false, 0, k2, Some(2), "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let boots = vm.boots();
    for b in &boots {
        assert_systemd_boot(b, &log);
    }
    let ota: Vec<OtaBoot> = boots.iter().map(OtaBoot::from_boot).collect();
    assert_eq!(ota[0].installs, [0], "{log}");
    assert_eq!(installed(&ota[0]), Some(vec!["b", "2", k2]), "{log}");
    // flipside-boot wrote the consumed try through U-Boot's block I/O before the kernel ran.
    let commit = boots[1].find("boot", "commit").expect(&log);
    assert_eq!(commit.get("attrs"), Some("P=2,T=1,S=0"), "{log}");
    let health = boots[1].find("updater", "health").expect(&log);
    assert_eq!(health.get("result"), Some("success"), "{log}");
    let st = &ota[1].statuses[0];
    assert_eq!(st["running"], "b", "{st}");
    assert_eq!(st["last"]["event"], "committed", "{st}");
    assert!(boots[2].find("boot", "commit").is_none(), "{log}");
    assert_eq!(status_bits(&ota[2].statuses[0])["b"], (2, 0, true));
    rig.disk
        .assert_bits((1, 0, true), (2, 0, true), "after the update")?;
    assert_eq!(rig.disk.cgpt_slot(Slot::B)?, (2, 0, true));
    Ok(())
}

/// v2 installs v3, whose own health check fails: on v3's trial boot flipside-health.service
/// marks slot b bad and reboots; v2 boots again from a, proven, and `flipside status` there
/// reports the rejected trial.
#[test]
fn arm_health_failure_rolls_back() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("arm_health_failure_rolls_back")?;
    let w = rig.world;
    let k2 = w.kernel_release(2);
    rig.provision(Slot::A, 2, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &w.repo(UpTo(3))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("health-fails")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT * 2)?;
    let log = vm.serial_log().display().to_string();
    report(&rig, "arm_health_rollback", &vm, started);

    let rows = rows(&vm);
    assert_eq!(rows.len(), 3, "{log}");
    assert_eq!(
        rows[0],
        Row::new(Slot::A, false, 0, k2, Some(2), "reboot"),
        "{log}"
    );
    // The trial: v3's kernel ran and systemd started; the health unit's reboot ends the boot
    // before (or while) the report unit runs.
    assert_eq!(
        (rows[1].slot, rows[1].trial, rows[1].tries_left),
        (Some(Slot::B), true, 1),
        "{log}"
    );
    assert_eq!(rows[1].kernel.as_deref(), Some(k2), "{log}");
    assert_eq!(
        rows[2],
        Row::new(Slot::A, false, 0, k2, Some(2), "poweroff"),
        "{log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let serial = fs::read_to_string(vm.serial_log()).map_err(Error::io("read", vm.serial_log()))?;
    assert!(
        serial.contains("appliance service did not start")
            && serial.contains("slot b marked bad, rebooting into slot a"),
        "flipside-health.service rejected v3 on the console; {log}"
    );
    let boots = vm.boots();
    assert_systemd_boot(&boots[0], &log);
    assert_systemd_boot(&boots[2], &log);
    let ota: Vec<OtaBoot> = boots.iter().map(OtaBoot::from_boot).collect();
    assert_eq!(installed(&ota[0]), Some(vec!["b", "3", k2]), "{log}");
    let st = &ota[2].statuses[0];
    assert_eq!(st["running"], "a", "{st}");
    assert_eq!(st["last"]["event"], "marked-bad", "{st}");
    assert_eq!(st["last"]["slot"], "b", "{st}");
    rig.disk
        .assert_bits((1, 0, true), (0, 0, false), "after the rollback")?;
    assert_eq!(rig.disk.cgpt_slot(Slot::B)?, (0, 0, false));
    Ok(())
}

/// v2 installs v4, whose kernel part cannot start the system (its initramfs' init exits, the
/// kernel panics, `panic=-1` resets): flipside-boot spends both tries and falls back to v2
/// with no human action; `flipside status` on v2 reports `fell-back`.
#[test]
fn arm_trial_kernel_that_panics_falls_back() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("arm_trial_kernel_that_panics_falls_back")?;
    let w = rig.world;
    let k2 = w.kernel_release(2);
    rig.provision(Slot::A, 2, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &w.repo(UpTo(4))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("kernel-panics")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT * 3)?;
    let log = vm.serial_log().display().to_string();
    report(&rig, "arm_kernel_fallback", &vm, started);

    assert_eq!(
        rows(&vm),
        [
            Row::new(Slot::A, false, 0, k2, Some(2), "reboot"),
            Row::new(Slot::B, true, 1, k2, None, "init-exited"),
            Row::new(Slot::B, true, 0, k2, None, "init-exited"),
            Row::new(Slot::A, false, 0, k2, Some(2), "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let serial = fs::read_to_string(vm.serial_log()).map_err(Error::io("read", vm.serial_log()))?;
    assert_eq!(
        serial.matches("Attempted to kill init").count(),
        2,
        "a real kernel panic on each trial boot: {log}"
    );
    let boots = vm.boots();
    assert_systemd_boot(&boots[0], &log);
    assert_systemd_boot(&boots[3], &log);
    let ota: Vec<OtaBoot> = boots.iter().map(OtaBoot::from_boot).collect();
    assert_eq!(installed(&ota[0]), Some(vec!["b", "4", k2]), "{log}");
    assert_fell_back(&ota[3].statuses[0], "b", 4);
    rig.disk
        .assert_bits((1, 0, true), (0, 0, false), "after the fallback")?;
    Ok(())
}

/// A release for the same system and hardware id but built for x86_64 is refused by the
/// aarch64 device: the install exits 8 (no release for this device) naming both
/// architectures, and nothing is written.
#[test]
fn arm_device_refuses_a_release_for_another_architecture() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("arm_device_refuses_a_release_for_another_architecture")?;
    let w = rig.world;
    let k2 = w.kernel_release(2);
    rig.provision(Slot::A, 2, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &w.foreign_repo()),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("foreign")?;
    let exit = vm.wait_exit(INSTALL_BOOT)?;
    let log = vm.serial_log().display().to_string();
    report(&rig, "arm_foreign_refused", &vm, started);

    assert_eq!(
        rows(&vm),
        [Row::new(Slot::A, false, 0, k2, Some(2), "poweroff")],
        "{log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let boot = &vm.boots()[0];
    assert_systemd_boot(boot, &log);
    let ota = OtaBoot::from_boot(boot);
    assert_eq!(
        ota.installs,
        [8],
        "exit 8: no release for this device; {log}"
    );
    assert!(ota.results.is_empty(), "{log}");
    let serial = fs::read_to_string(vm.serial_log()).map_err(Error::io("read", vm.serial_log()))?;
    assert!(
        serial.contains("architecture aarch64")
            && serial.contains(&format!("{FOREIGN} for qemu-aarch64"))
            && serial.contains("built for x86_64"),
        "the refusal names both architectures; {log}"
    );
    rig.disk
        .assert_bits((2, 0, true), (0, 0, false), "after the refusal")?;
    Ok(())
}
