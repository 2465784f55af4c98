//! Over-the-air update scenarios on the virtual appliance, with real reboots: the real
//! `flipside` updater inside the images, a real flipside repository served from the host's
//! 127.0.0.1 through `guestfwd` (the guest reaches nothing else), and the boot state read back
//! from the disk with the library and with cgpt. Each test prints
//! `SCENARIO name boots=N wall=S`. Serial logs: `<target>/qemu-logs/<test>/`.

use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::ota::{
    assert_fell_back, install_pausing_at_gpt_write, status_bits, OtaBoot, Rig, Snapshot,
};
use flipside_qemu_tests::server::Step;
use flipside_qemu_tests::{BootSummary, Marker, QemuExit, Result, Vm, BOOT_TIMEOUT};

/// Upper bound of a boot that also installs a release (under TCG, on a busy machine).
const INSTALL_BOOT: Duration = Duration::from_secs(180);

fn ota_boots(vm: &Vm) -> Vec<OtaBoot> {
    vm.boots().iter().map(OtaBoot::from_boot).collect()
}

fn report(name: &str, boots: usize, started: Instant) {
    eprintln!(
        "SCENARIO {name} boots={boots} wall={:.1}",
        started.elapsed().as_secs_f64()
    );
}

/// Slot and version of a boot's install result.
fn installed(boot: &OtaBoot) -> Option<Vec<&str>> {
    boot.installed(&["slot", "version"])
}

/// Scenarios 1 and 2 on one disk: v1 (root-a) installs v2 into root-b; v2 boots on trial,
/// passes its health check and is committed; the next boot is v2 again. Then v3, whose
/// health check fails, is installed into root-a: it boots on trial, is marked bad, the device
/// reboots into v2 by itself and `status` says why.
#[test]
fn update_commits_then_health_failure_rolls_back() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("update_commits_then_health_failure_rolls_back")?;
    rig.provision(Slot::A, 1, (2, 0, true))?;
    rig.server.push_steps(rig.world.update_then_rollback());
    let mut vm = rig.start("ota")?;
    let exit = vm.wait_exit(INSTALL_BOOT * 2 + BOOT_TIMEOUT * 3)?;
    let log = vm.serial_log().display().to_string();
    let boots = ota_boots(&vm);
    report("update_and_health_rollback", boots.len(), started);

    let summaries: Vec<BootSummary> = boots.iter().map(|b| b.summary.clone()).collect();
    assert_eq!(
        summaries,
        [
            BootSummary::system(Slot::A, false, 0, 1, "reboot"),
            BootSummary::system(Slot::B, true, 1, 2, "reboot"),
            BootSummary::system(Slot::B, false, 0, 2, "reboot"),
            BootSummary::system(Slot::A, true, 1, 3, "reboot"),
            BootSummary::system(Slot::B, false, 0, 2, "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    // Boot 1: v2 streamed into b.
    assert_eq!(boots[0].installs, [0], "{log}");
    assert_eq!(installed(&boots[0]), Some(vec!["b", "2"]));
    // Boot 2: healthy trial, committed; status shows b proven and running.
    assert_eq!(boots[1].health, Some(0), "{log}");
    let st = &boots[1].statuses[0];
    assert_eq!(st["running"], "b");
    assert_eq!(st["last"]["event"], "committed");
    assert!(status_bits(st)["b"].2, "b successful after commit: {st}");
    // Boot 3: v2 again, proven; installs v3 into a.
    assert_eq!(boots[2].installs, [0], "{log}");
    assert_eq!(installed(&boots[2]), Some(vec!["a", "3"]));
    // Boot 4: v3's health check fails: marked bad, and the updater reboots at once (so
    // `flipside health` never returns to print its exit code).
    assert_eq!(boots[3].health, None, "{log}");
    assert!(boots[3].rebooted_by_updater, "{log}");
    assert!(boots[3].steps.is_empty(), "a failed trial takes no steps");
    // Boot 5: back on v2 with no help; status tells the rollback and why.
    let st = &boots[4].statuses[0];
    assert_eq!(st["running"], "b");
    assert_eq!(st["last"]["event"], "marked-bad");
    assert_eq!(st["last"]["slot"], "a");
    let why = st["last"]["detail"].as_str().unwrap_or_default();
    assert!(
        why.contains("10-service"),
        "the failed check is named: {why}"
    );
    assert_eq!(status_bits(st)["a"], (0, 0, false));

    rig.disk
        .assert_bits((0, 0, false), (1, 0, true), "after the rollback")?;
    Ok(())
}

/// Scenario 3: v4's init panics. It uses up its trial boots and the device falls back to v2
/// with no human action.
#[test]
fn boot_failure_uses_up_tries_and_falls_back() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("boot_failure_uses_up_tries_and_falls_back")?;
    rig.provision(Slot::A, 2, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &rig.world.repo(Snapshot::UpTo(4))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("ota")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT_TIMEOUT * 3)?;
    let log = vm.serial_log().display().to_string();
    let boots = ota_boots(&vm);
    report("boot_failure_fallback", boots.len(), started);

    let summaries: Vec<BootSummary> = boots.iter().map(|b| b.summary.clone()).collect();
    assert_eq!(
        summaries,
        [
            BootSummary::system(Slot::A, false, 0, 2, "reboot"),
            BootSummary::system(Slot::B, true, 1, 4, "panic"),
            BootSummary::system(Slot::B, true, 0, 4, "panic"),
            BootSummary::system(Slot::A, false, 0, 2, "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(installed(&boots[0]), Some(vec!["b", "4"]));
    let st = &boots[3].statuses[0];
    assert_eq!(status_bits(st)["b"], (0, 0, false));
    // No flipside ran on b: status tells the failed trial from the record and the bits.
    assert_fell_back(st, "b", 4);
    rig.disk
        .assert_bits((1, 0, true), (0, 0, false), "after the fallback")?;
    Ok(())
}

/// Scenario 4: the power is cut during streaming, right after the install armed the slot,
/// and at the moment of the reboot into it. Every following boot comes up on a good slot and
/// the next install completes.
#[test]
fn power_cuts_during_install_leave_a_bootable_device() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("power_cuts_during_install_leave_a_bootable_device")?;
    rig.provision(Slot::A, 1, (2, 0, true))?;
    let mut boots = 0;
    let select = |m: &Marker| m.is("initrd", "select");

    // Cut 1: while the bundle streams. The server sends bundles slowly, so that the download
    // lasts seconds; the power goes once the copies from slot a are synced (the updater's
    // `FLIPSIDE_SYNCED` line: durable, whatever the cut does to the guest's page cache) and
    // bundle bytes are flowing.
    rig.server.set_throttle(Some(4 << 10));
    rig.server.push_steps([Step::with_repo(
        "install",
        &rig.world.repo(Snapshot::UpTo(2)),
    )]);
    let mut vm = rig.start("cut-streaming")?;
    let synced = vm.wait_for("a durable high-water mark", INSTALL_BOOT, |m| {
        m.is("updater", "synced") && m.get("part") == Some("root")
    })?;
    let synced: u64 = synced.get("bytes").unwrap_or("0").parse().unwrap_or(0);
    assert!(synced > 0, "the first sync made nothing durable");
    let deadline = Instant::now() + INSTALL_BOOT;
    while rig.server.bundle_bytes_sent() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    vm.kill();
    boots += vm.boots().len();
    let streamed = rig.server.bundle_bytes_sent();
    assert!(streamed > 0, "no bundle byte was sent before the cut");
    assert!(
        !vm.markers().iter().any(|m| m.is("updater", "result")),
        "the cut came after the install finished: {}",
        vm.serial_log().display()
    );
    eprintln!("cut while streaming after {streamed} bundle bytes");
    rig.disk
        .assert_bits((2, 0, true), (0, 0, false), "after a cut while streaming")?;

    // Cut 2: right after the install armed slot b, before any reboot. The old slot boots
    // first (b was not bootable), the install resumes and completes.
    rig.server.set_throttle(None);
    rig.server.push_steps([Step::new("install")]);
    let mut vm = rig.start("cut-after-install")?;
    let sel = vm.wait_for("the slot choice", BOOT_TIMEOUT, select)?;
    assert_eq!((sel.get("slot"), sel.get("trial")), (Some("a"), Some("0")));
    let result = vm.wait_for("the install result", INSTALL_BOOT, |m| {
        m.is("updater", "result")
    })?;
    vm.kill();
    boots += vm.boots().len();
    assert_eq!(result.get("event"), Some("installed"));
    assert_eq!(result.get("slot"), Some("b"));
    let field = |k: &str| -> u64 { result.get(k).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let bundle = rig.world.bundle_len(2)?;
    eprintln!(
        "resumed install: fetched={} reused={} copied={} of a {bundle} byte bundle; \
         {synced} bytes were synced before the cut",
        field("fetched"),
        field("reused"),
        field("copied"),
    );
    // Everything synced before the power cut is kept (re-hashed, not fetched or copied again).
    assert!(
        field("reused") >= synced,
        "the resume kept {} bytes, {synced} were durable: {}",
        field("reused"),
        vm.serial_log().display()
    );
    assert!(
        field("fetched") < bundle,
        "the resume fetched the whole bundle"
    );
    rig.disk
        .assert_bits((1, 0, true), (2, 2, false), "after a cut once armed")?;

    // Cut 3: v2 boots on trial, is committed, installs v5 into a; the power goes at the
    // reboot into it.
    rig.server.push_steps([
        Step::new("status"),
        Step::with_repo("install", &rig.world.repo(Snapshot::UpTo(5))),
        Step::new("reboot"),
    ]);
    let mut vm = rig.start("cut-at-reboot")?;
    let sel = vm.wait_for("the slot choice", BOOT_TIMEOUT, select)?;
    assert_eq!((sel.get("slot"), sel.get("trial")), (Some("b"), Some("1")));
    vm.wait_for("the reboot", INSTALL_BOOT, |m| {
        m.is("system", "end") && m.get("action") == Some("reboot")
    })?;
    vm.kill();
    boots += vm.boots().len();
    let first = OtaBoot::from_boot(&vm.boots()[0]);
    assert_eq!(first.health, Some(0), "{}", vm.serial_log().display());
    assert_eq!(installed(&first), Some(vec!["a", "5"]));
    rig.disk
        .assert_bits((2, 2, false), (1, 0, true), "after a cut at the reboot")?;

    // Afterwards: v5 boots on trial and is committed.
    rig.server
        .push_steps([Step::new("status"), Step::new("poweroff")]);
    let mut vm = rig.start("after")?;
    let exit = vm.wait_exit(BOOT_TIMEOUT * 2)?;
    boots += vm.boots().len();
    let after = ota_boots(&vm);
    assert_eq!(
        after.iter().map(|b| b.summary.clone()).collect::<Vec<_>>(),
        [BootSummary::system(Slot::A, true, 1, 5, "poweroff")],
        "{}",
        vm.serial_log().display()
    );
    assert_eq!(after[0].health, Some(0));
    assert_eq!(after[0].statuses[0]["last"]["event"], "committed");
    assert_eq!(exit, QemuExit::PoweredOff);
    rig.disk
        .assert_bits((2, 0, true), (1, 0, true), "after the last install")?;
    report("power_cuts", boots, started);
    Ok(())
}

/// Scenario 4b: the power goes in the middle of the GPT write that arms slot b, after the
/// backup copy is written and flushed and before the primary is touched (the updater's
/// test-only stop, `install-gpt-pause-1`: with b already cleared, arming is the install's first
/// table write). Backup first means the primary still holds the old table, complete and valid:
/// the device boots a as before, and the next install repairs the table and arms b, which boots
/// on trial and is committed.
#[test]
fn power_cut_between_the_gpt_copies_boots_the_old_table() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("power_cut_between_the_gpt_copies_boots_the_old_table")?;
    rig.provision(Slot::A, 1, (2, 0, true))?;
    let (before, armed) = (((2, 0, true), (0, 0, false)), ((1, 0, true), (2, 2, false)));
    rig.server.push_steps([Step::with_repo(
        &install_pausing_at_gpt_write(1),
        &rig.world.repo(Snapshot::UpTo(2)),
    )]);
    let mut vm = rig.start("cut-in-gpt-write")?;
    let pause = vm.wait_for("the stop between the GPT copies", INSTALL_BOOT, |m| {
        m.is("gpt", "pause")
    })?;
    vm.kill();
    let mut boots = vm.boots().len();
    assert_eq!(
        (pause.get("written"), pause.get("pending")),
        (Some("backup"), Some("primary")),
        "{}",
        vm.serial_log().display()
    );
    let copies = rig.disk.table_copies()?;
    eprintln!("table copies after the cut: {copies:?}");
    assert!(!copies.agree, "the copies differ after a cut between them");
    assert_eq!(copies.primary.ok(), Some(before), "primary: old and valid");
    assert_eq!(copies.backup.ok(), Some(armed), "backup: new and valid");
    // What every reader (flipside-select, flipside-boot, cgpt) takes: the primary.
    rig.disk
        .assert_bits(before.0, before.1, "after a cut in the GPT write")?;

    // The next boot: a, as before; the install completes (the slot's bytes kept after
    // re-hashing), b boots on trial and is committed.
    rig.server.push_steps([
        Step::new("install"),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("after")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT_TIMEOUT * 2)?;
    let log = vm.serial_log().display().to_string();
    let after = ota_boots(&vm);
    boots += after.len();
    assert_eq!(
        after.iter().map(|b| b.summary.clone()).collect::<Vec<_>>(),
        [
            BootSummary::system(Slot::A, false, 0, 1, "reboot"),
            BootSummary::system(Slot::B, true, 1, 2, "poweroff"),
        ],
        "{log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(after[0].installs, [0], "{log}");
    assert_eq!(installed(&after[0]), Some(vec!["b", "2"]));
    let reused = after[0].installed(&["reused"]).unwrap_or_default();
    eprintln!("install after the cut: reused={reused:?}");
    assert_eq!(after[1].health, Some(0), "{log}");
    assert_eq!(after[1].statuses[0]["last"]["event"], "committed");
    rig.disk
        .assert_bits((1, 0, true), (2, 0, true), "after the next install")?;
    let copies = rig.disk.table_copies()?;
    assert!(copies.agree, "both copies rewritten: {copies:?}");
    report("power_cut_in_gpt_write", boots, started);
    Ok(())
}

/// Scenario 5: in the guest, a downgrade (exit 7), a tampered bundle (exit 9) and an expired
/// repository (exit 6) are refused; the boot bits stay as they were and the device boots the
/// same slot again.
#[test]
fn refusals_leave_the_device_as_it_was() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("refusals_leave_the_device_as_it_was")?;
    rig.provision(Slot::A, 5, (2, 0, true))?;
    rig.server.push_steps([
        // Release 5 runs; the repository's newest is 4.
        Step::with_repo("install", &rig.world.repo(Snapshot::UpTo(4))),
        Step::with_repo("install", &rig.world.repo(Snapshot::Tampered)),
        Step::with_repo("install", &rig.world.repo(Snapshot::Expired)),
        Step::new("status"),
        Step::new("reboot"),
        Step::new("poweroff"),
    ]);
    let mut vm = rig.start("ota")?;
    let exit = vm.wait_exit(INSTALL_BOOT + BOOT_TIMEOUT * 2)?;
    let log = vm.serial_log().display().to_string();
    let boots = ota_boots(&vm);
    report("refusals", boots.len(), started);
    assert_eq!(
        boots.iter().map(|b| b.summary.clone()).collect::<Vec<_>>(),
        [
            BootSummary::system(Slot::A, false, 0, 5, "reboot"),
            BootSummary::system(Slot::A, false, 0, 5, "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(boots[0].installs, [7, 9, 6], "{log}");
    assert!(boots[0].results.is_empty(), "nothing was installed: {log}");
    let st = &boots[0].statuses[0];
    assert_eq!(st["running"], "a");
    assert_eq!(st["boots_next"], "a");
    rig.disk
        .assert_bits((2, 0, true), (0, 0, false), "after the refusals")?;
    Ok(())
}
