//! A device of a fleet updating itself, on the Debian appliance with systemd
//! (`flipside_qemu_tests::fleet`): nothing is typed on the device. The shipped
//! `flipside-update.timer` runs `flipside update`; the publisher's re-signed repository states
//! are served by the test's update server, which also collects the events.
//!
//! | step | served repository | what the timer's run must do |
//! |---|---|---|
//! | 1 | release 2, its first wave stops just below this device | wait (`event=waiting`) |
//! | 2 | the same, rollout paused | wait (paused before this device) |
//! | 3 | the same, the whole fleet | install into b, then wait: outside the window |
//! | 4 | guest clock set inside the window | reboot |
//! | boot 2 | | trial of b, committed by the health unit |
//!
//! Every event reaches the collector. Each step prints `FLEET ...` timings (`--nocapture`).

use std::time::{Duration, Instant};

use chrono::{SubsecRound, TimeDelta, Timelike, Utc};
use flipside_bootloader_hooks::Slot;
use flipside_contract::rollout::{place, Rollout, Wave, FLEET};
use flipside_qemu_tests::debian::{self, Base, Repo};
use flipside_qemu_tests::fleet;
use flipside_qemu_tests::ota::GUEST_PORT;
use flipside_qemu_tests::server::{Step, UpdateServer};
use flipside_qemu_tests::{BootSummary, GuestFwd, QemuExit, Result, TestBed, TestDisk};
use flipside_repository::{AddOptions, Amend};

/// This device's rollout seed (`/data/machine-id`).
const MACHINE_ID: &str = "5f0c2a7e9b1d4c3a8e6f0b2d4c6a8e0f";
/// Two boots, four timer runs and an install under TCG on a busy 2-core machine; a guard.
const SCENARIO: Duration = Duration::from_secs(900);

#[test]
fn a_device_waits_for_its_wave_and_window_then_updates_itself_and_reports() -> Result<()> {
    let bed =
        TestBed::new("a_device_waits_for_its_wave_and_window_then_updates_itself_and_reports")?;
    let base = Base::get(bed.assets)?;
    let started = Instant::now();

    // The window opens three hours from now for two hours (the guest's clock is UTC and starts
    // at the host's time); step 4 moves the guest's clock half an hour into it.
    let now = Utc::now().trunc_subsecs(0);
    let opens = (now + TimeDelta::hours(3))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .expect("a whole hour");
    let hhmm = |t: chrono::DateTime<Utc>| t.format("%H:%M").to_string();
    let variant = fleet::variant(&hhmm(opens), &hhmm(opens + TimeDelta::hours(2)));
    let mut repo = Repo::create(&bed.work().join("repository"))?;
    let v1 = debian::build_variant(bed.assets, base, 1, &repo.root_json, bed.work(), &variant)?;
    let v2 = debian::build_variant(bed.assets, base, 2, &repo.root_json, bed.work(), &variant)?;

    // The publisher: release 1; then 2 with a first wave that stops just below this device.
    let me = place(MACHINE_ID.as_bytes(), debian::NAME);
    assert!(
        me > 0 && me < FLEET,
        "the scenario needs a place inside the fleet: {me}"
    );
    repo.add(&v1.out)?;
    let only_1 = repo.snapshot(&bed.work().join("served-1"))?;
    let waves = Rollout {
        waves: vec![
            Wave {
                start: now - TimeDelta::hours(1),
                share: me,
            },
            Wave {
                start: now + TimeDelta::days(30),
                share: FLEET,
            },
        ],
        paused_at: None,
    };
    let options = AddOptions {
        rollout: Some(waves),
        ..AddOptions::default()
    };
    repo.add_with(&v2.out, options)?;
    let outside_wave = repo.snapshot(&bed.work().join("served-wave"))?;
    repo.amend(2, &Amend::Pause)?;
    let paused = repo.snapshot(&bed.work().join("served-paused"))?;
    repo.amend(2, &Amend::Resume)?;
    repo.amend(2, &Amend::Rollout(None))?;
    let everyone = repo.snapshot(&bed.work().join("served-everyone"))?;
    eprintln!(
        "FLEET images and repository states wall={:.1}",
        started.elapsed().as_secs_f64()
    );

    // The device: a runs release 1, proven; b empty; its seed on the data partition.
    let data = bed.work().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let seed = fleet::MACHINE_ID_FILE.trim_start_matches("/data/");
    std::fs::write(data.join(seed), format!("{MACHINE_ID}\n")).unwrap();
    let disk = TestDisk::create(
        &bed.work().join("disk.img"),
        &debian::disk_layout(),
        Some(&data),
    )?;
    disk.write_slot(Slot::A, &v1.image)?;
    disk.set_slot(Slot::A, 2, 0, true)?;
    disk.set_slot(Slot::B, 0, 0, false)?;

    let server = UpdateServer::start()?;
    server.set_repo(&only_1);
    let in_window = opens + TimeDelta::minutes(30);
    server.push_steps([
        Step::with_repo("wait-update", &outside_wave),
        Step::with_repo("wait-update", &paused),
        Step::with_repo("wait-update", &everyone),
        Step::new(&format!("settime {}", in_window.timestamp())),
        Step::new("wait-update"),
        // Boot 2, after the health unit's verdict.
        Step::new("status"),
    ]);
    let mut cfg = bed.vm_config("fleet", &disk);
    cfg.memory_mib = 384;
    cfg.network = Some(GuestFwd {
        guest_port: GUEST_PORT,
        host_port: server.port(),
        busybox: bed.assets.busybox.clone(),
    });
    let booted = Instant::now();
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(SCENARIO)?;
    let wall = booted.elapsed().as_secs_f64();
    let log = vm.serial_log().display().to_string();
    let serial = std::fs::read_to_string(vm.serial_log()).unwrap_or_default();
    assert_eq!(exit, QemuExit::PoweredOff, "{log}");
    let boots = vm.boots();
    let summaries: Vec<BootSummary> = boots.iter().map(|b| b.summary()).collect();
    assert_eq!(summaries.len(), 2, "two boots: {summaries:?} {log}");
    assert_eq!(
        summaries[1],
        BootSummary::system(Slot::B, true, 1, 2, "poweroff"),
        "boot 2 is the trial of release 2: {log}"
    );
    assert_eq!(boots[0].system_version(), Some(1), "{log}");

    // What the timer's runs printed, in order.
    let results: Vec<&str> = serial
        .lines()
        .filter_map(|l| l.split("FLIPSIDE_RESULT ").nth(1))
        .collect();
    let position = |needle: &str| {
        results
            .iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no result with {needle:?} in {results:#?} ({log})"))
    };
    let waiting = position("event=waiting version=2");
    let installed = position("event=installed slot=b version=2");
    let reboot_waits = position("event=reboot-waiting");
    let rebooting = position("event=rebooting");
    assert!(
        waiting < installed && installed <= reboot_waits && reboot_waits < rebooting,
        "{results:#?}"
    );
    assert!(
        serial.contains("rollout is paused before this device"),
        "the paused state held the device: {log}"
    );
    assert!(
        serial.contains("healthy: slot b committed"),
        "the trial is committed: {log}"
    );
    disk.assert_bits((1, 0, true), (2, 0, true), "after the committed trial")?;

    // The collector got every step, in order.
    let events: Vec<serde_json::Value> = server
        .events()
        .iter()
        .map(|l| serde_json::from_str(l).expect("an event is one JSON object"))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.iter().all(|e| e["schema"] == 1), "{events:#?}");
    let first = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no {name} event in {names:?}"))
    };
    assert!(
        first("waiting") < first("download")
            && first("download") < first("installed")
            && first("installed") < first("rebooting")
            && first("rebooting") < first("committed"),
        "{names:?}"
    );
    assert!(
        names.iter().filter(|n| **n == "waiting").count() >= 2,
        "outside the wave and paused: {names:?}"
    );
    assert_eq!(server.pending_steps(), 0, "every step was taken: {log}");
    eprintln!(
        "FLEET scenario boots=2 timer_runs={} events={} qemu_wall={wall:.1} total_wall={:.1}",
        serial.matches("FLIPSIDE: updater timer-run").count(),
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
