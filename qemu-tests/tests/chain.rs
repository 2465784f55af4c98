//! The whole chain under OVMF with real reboots: firmware -> flipside-boot -> the slot's UKI
//! from its kernel partition -> initramfs -> systemd of the Debian appliance, updated by the
//! real `flipside` (the shipped update unit) from a repository made by `flipside-build image`
//! (`[kernel]`) and `flipside-build repo add`, served on the host's 127.0.0.1 through
//! `guestfwd`. Releases 1 and 2 carry two different Debian kernel builds, release 3 a kernel
//! part that cannot start the system. Bits are read back with the library and cgpt after
//! QEMU exits. Each test prints `SCENARIO name boots=N wall=S` and `STAGES` per boot; serial
//! logs and timelines stay in `<target>/qemu-logs/<test>/`.

use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::chain::{self, assert_systemd_boot, Rig, Row, UpTo, BOOT, INSTALL_BOOT};
use flipside_qemu_tests::ota::{assert_fell_back, status_bits, OtaBoot};
use flipside_qemu_tests::server::Step;
use flipside_qemu_tests::{QemuExit, Result, Vm};

fn report(name: &str, boots: usize, started: Instant) {
    eprintln!(
        "SCENARIO {name} boots={boots} wall={:.1}",
        started.elapsed().as_secs_f64()
    );
}

/// Prints the stage times of every boot of `vm` from its timeline.
fn print_stages(rig: &Rig, vm_name: &str) {
    let path = rig.bed.logs.join(format!("{vm_name}.timeline.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for (i, s) in chain::stages(&text).iter().enumerate() {
        eprintln!("STAGES {vm_name} boot {}: {}", i + 1, s.describe());
    }
}

fn rows(vm: &Vm) -> Vec<Row> {
    vm.boots().iter().map(Row::from_boot).collect()
}

/// Slot, version and kernel release of a boot's install result.
fn installed(boot: &OtaBoot) -> Option<Vec<&str>> {
    boot.installed(&["slot", "version", "kernel"])
}

/// Scenario 1: v1 (older kernel) installs v2 (newer kernel and root together) through the
/// update unit and reboots; flipside-boot consumes a try and boots v2's UKI from kernel-b;
/// `uname -r` is v2's kernel; flipside-health.service commits; the next boot is v2 again,
/// proven, without a try consumed.
#[test]
fn chain_update_changes_kernel_and_root_together() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("chain_update_changes_kernel_and_root_together")?;
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
    let mut vm = rig.start("chain")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT * 2)?;
    let log = vm.serial_log().display().to_string();
    report("chain_kernel_and_root_update", vm.boots().len(), started);
    print_stages(&rig, "chain");

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
    // Boot 1: kernel and root of v2 into slot b, one install.
    assert_eq!(ota[0].installs, [0], "{log}");
    assert_eq!(installed(&ota[0]), Some(vec!["b", "2", k2]), "{log}");
    // Boot 2: flipside-boot wrote the consumed try before starting the kernel; the health
    // unit committed.
    let commit = boots[1].find("boot", "commit").expect(&log);
    assert_eq!(commit.get("attrs"), Some("P=2,T=1,S=0"), "{log}");
    let health = boots[1].find("updater", "health").expect(&log);
    assert_eq!(health.get("result"), Some("success"), "{log}");
    let st = &ota[1].statuses[0];
    assert_eq!(st["running"], "b", "{st}");
    assert_eq!(st["last"]["event"], "committed", "{st}");
    let b = st["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slot"] == "b"))
        .expect("slot b in status");
    assert_eq!(b["release"]["version"], 2, "{st}");
    assert_eq!(b["release"]["kernel_release"], k2, "{st}");
    // Boot 3: proven, flipside-boot writes nothing.
    assert!(boots[2].find("boot", "commit").is_none(), "{log}");
    assert_eq!(status_bits(&ota[2].statuses[0])["b"], (2, 0, true));
    rig.disk
        .assert_bits((1, 0, true), (2, 0, true), "after the update")?;
    Ok(())
}

/// Scenario 2: v3's kernel part cannot start the system (its initramfs' init exits, the
/// kernel panics). flipside-boot spends both tries and falls back to v2 with no human action;
/// `flipside status` on v2 reports `fell-back`.
#[test]
fn chain_kernel_that_cannot_start_falls_back() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("chain_kernel_that_cannot_start_falls_back")?;
    let w = rig.world;
    let k2 = w.kernel_release(2);
    rig.provision(Slot::A, 2, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &w.repo(UpTo(3))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("chain")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT * 3)?;
    let log = vm.serial_log().display().to_string();
    report("chain_kernel_fallback", vm.boots().len(), started);
    print_stages(&rig, "chain");

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
    let serial = std::fs::read_to_string(vm.serial_log()).unwrap_or_default();
    assert_eq!(
        serial.matches("Attempted to kill init").count(),
        2,
        "a real kernel panic on each trial boot: {log}"
    );
    let boots = vm.boots();
    assert_systemd_boot(&boots[0], &log);
    assert_systemd_boot(&boots[3], &log);
    let ota: Vec<OtaBoot> = boots.iter().map(OtaBoot::from_boot).collect();
    assert_eq!(installed(&ota[0]), Some(vec!["b", "3", k2]), "{log}");
    assert_fell_back(&ota[3].statuses[0], "b", 3);
    rig.disk
        .assert_bits((1, 0, true), (0, 0, false), "after the fallback")?;
    Ok(())
}

/// Scenario 3: the power is cut (QEMU killed) while the kernel part streams (the server
/// throttles bundles), then right after the install armed the slot (after `FLIPSIDE_RESULT
/// event=installed`, before any reboot). Every following boot is a good slot; the retried
/// install completes and its trial boot is committed.
#[test]
fn chain_power_cuts_while_the_kernel_is_written() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("chain_power_cuts_while_the_kernel_is_written")?;
    let w = rig.world;
    let (k1, k2) = (w.kernel_release(1), w.kernel_release(2));
    rig.provision(Slot::A, 1, (2, 0, true))?;
    let mut boots = 0;

    // Cut 1: while the kernel part streams.
    rig.server.set_throttle(Some(16 << 10));
    rig.server
        .push_steps([Step::with_repo("install", &w.repo(UpTo(2)))]);
    let mut vm = rig.start("cut-kernel")?;
    vm.wait_for("the install writing", INSTALL_BOOT, |m| {
        m.is("updater", "progress") && m.get("phase") == Some("write")
    })?;
    let deadline = Instant::now() + INSTALL_BOOT;
    while rig.server.bundle_bytes_sent_for(".kernel.bundle") < 64 << 10 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    vm.kill();
    boots += vm.boots().len();
    let kernel_sent = rig.server.bundle_bytes_sent_for(".kernel.bundle");
    let root_sent = rig.server.bundle_bytes_sent() - kernel_sent;
    eprintln!(
        "cut while the kernel part streamed: {kernel_sent} of {} kernel bundle bytes, {root_sent} root bundle bytes",
        w.kernel_bundle_len(2)?
    );
    assert!(
        kernel_sent > 0,
        "no kernel bundle byte was sent before the cut"
    );
    assert_eq!(root_sent, 0, "the kernel part is written first");
    assert!(
        !vm.markers().iter().any(|m| m.is("updater", "result")),
        "{}",
        vm.serial_log().display()
    );
    assert_eq!(
        rows(&vm),
        [Row::new(Slot::A, false, 0, k1, Some(1), "none")],
        "{}",
        vm.serial_log().display()
    );
    rig.disk.assert_bits(
        (2, 0, true),
        (0, 0, false),
        "after a cut in the kernel part",
    )?;

    // Cut 2: the retry completes; the power goes right after it armed slot b.
    rig.server.set_throttle(None);
    rig.server.push_steps([Step::new("install")]);
    let mut vm = rig.start("cut-armed")?;
    let result = vm.wait_for("the install result", INSTALL_BOOT, |m| {
        m.is("updater", "result")
    })?;
    vm.kill();
    boots += vm.boots().len();
    assert_eq!(result.get("event"), Some("installed"));
    assert_eq!(result.get("slot"), Some("b"));
    assert_eq!(result.get("kernel"), Some(k2));
    eprintln!(
        "retried install: fetched={} reused={} copied={}",
        result.get("fetched").unwrap_or("?"),
        result.get("reused").unwrap_or("?"),
        result.get("copied").unwrap_or("?"),
    );
    assert_eq!(
        rows(&vm),
        [Row::new(Slot::A, false, 0, k1, Some(1), "none")],
        "{}",
        vm.serial_log().display()
    );
    rig.disk
        .assert_bits((1, 0, true), (2, 2, false), "after a cut once armed")?;

    // Afterwards: v2 boots on trial with its own kernel and is committed.
    rig.server
        .push_steps([Step::new("status"), Step::new("poweroff")]);
    let mut vm = rig.start("after")?;
    let exit = vm.wait_exit(BOOT)?;
    boots += vm.boots().len();
    let log = vm.serial_log().display().to_string();
    print_stages(&rig, "after");
    assert_eq!(
        rows(&vm),
        [Row::new(Slot::B, true, 1, k2, Some(2), "poweroff")],
        "{log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let boot = &vm.boots()[0];
    assert_systemd_boot(boot, &log);
    assert_eq!(
        OtaBoot::from_boot(boot).statuses[0]["last"]["event"],
        "committed",
        "{log}"
    );
    rig.disk
        .assert_bits((1, 0, true), (2, 0, true), "after the retried install")?;
    report("chain_power_cuts", boots, started);
    Ok(())
}
