//! The Debian appliance (`flipside_qemu_tests::debian`: bookworm by mmdebstrap, systemd as PID
//! 1, flipside's units) booted with the direct-kernel harness: Debian's kernel, the test
//! initramfs, the slot's squashfs as the read-only root, `/init -> /sbin/init` (systemd).
//!
//! Root-b holds release 1 on trial (P=2 T=1 S=0), root-a the same image proven; the data
//! partition holds a repository (directory mirror) publishing releases 1 and 2. The first
//! boot must be the trial of b: systemd reaches multi-user.target, `flipside-health.service`
//! commits the slot, boot-complete.target is reached, the test unit reports and powers off;
//! the disk then reads b P=2 T=0 S=1 (library and cgpt). The second boot runs b as the proven
//! slot: the health unit runs and commits nothing; then the shipped `flipside-update.service`
//! (idle priority, hardened) runs once and installs release 2 into root-a: a P=2 T=2 S=0,
//! b P=1 T=0 S=1 afterwards. Each step prints `DEBIAN ...` timings (see `--nocapture`).

use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::debian::{self, Base, Repo};
use flipside_qemu_tests::markers::Boot;
use flipside_qemu_tests::{BootSummary, QemuExit, Result, TestBed, TestDisk, VmConfig};

/// Upper bound of one systemd boot under TCG on a busy 2-core machine; a guard.
const SYSTEMD_BOOT: Duration = Duration::from_secs(240);

fn marker<'a>(boot: &'a Boot, source: &str, event: &str, key: &str) -> Option<&'a str> {
    boot.find(source, event).and_then(|m| m.get(key))
}

/// The `systemd target name=N` marker's `key`.
fn target<'a>(boot: &'a Boot, name: &str, key: &str) -> Option<&'a str> {
    boot.markers
        .iter()
        .find(|m| m.is("systemd", "target") && m.get("name") == Some(name))
        .and_then(|m| m.get(key))
}

/// What every healthy boot of the appliance shows.
fn assert_healthy_systemd_boot(boot: &Boot, log: &str) {
    assert_eq!(
        marker(boot, "system", "up", "init"),
        Some("systemd"),
        "PID 1: {log}"
    );
    assert_eq!(
        target(boot, "multi-user.target", "state"),
        Some("active"),
        "{log}"
    );
    assert_eq!(
        target(boot, "boot-complete.target", "state"),
        Some("active"),
        "{log}"
    );
    assert_eq!(
        marker(boot, "updater", "health", "code"),
        Some("0"),
        "{log}"
    );
    assert_eq!(
        marker(boot, "updater", "health", "result"),
        Some("success"),
        "{log}"
    );
    assert_eq!(
        marker(boot, "systemd", "failed", "units"),
        Some("none"),
        "{log}"
    );
    assert_eq!(
        marker(boot, "systemd", "machine-id", "transient"),
        Some("yes"),
        "{log}"
    );
    let mounts = boot.find("systemd", "mounts").expect("mounts marker");
    assert!(
        mounts
            .get("root")
            .is_some_and(|r| r.starts_with("squashfs:ro")),
        "{log}"
    );
    assert_eq!(mounts.get("var"), Some("tmpfs"), "{log}");
    assert_eq!(mounts.get("tmp"), Some("tmpfs"), "{log}");
    assert_eq!(mounts.get("data"), Some("ext4"), "{log}");
}

fn seconds_to_multi_user(boot: &Boot) -> f64 {
    target(boot, "multi-user.target", "at_us")
        .and_then(|us| us.parse::<f64>().ok())
        .map_or(f64::NAN, |us| us / 1e6)
}

/// Boots `cfg` once to its power-off: one healthy systemd boot matching `summary`, with
/// flipside's health `verdict` on the console. Prints the boot's timings; returns the boots,
/// the serial output and the log's path (for messages).
fn boot_healthy(
    bed: &TestBed,
    cfg: &VmConfig,
    summary: BootSummary,
    verdict: &str,
) -> Result<(Vec<Boot>, String, String)> {
    let started = Instant::now();
    let mut vm = bed.start(cfg)?;
    let exit = vm.wait_exit(SYSTEMD_BOOT)?;
    let wall = started.elapsed().as_secs_f64();
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(
        boots.iter().map(Boot::summary).collect::<Vec<_>>(),
        [summary],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff, "{log}");
    assert_healthy_systemd_boot(&boots[0], &log);
    let serial = std::fs::read_to_string(vm.serial_log()).unwrap_or_default();
    assert!(
        serial.contains(verdict),
        "flipside's verdict on the console: {log}"
    );
    eprintln!(
        "DEBIAN boot {} multi_user_s={:.2} qemu_wall={wall:.1}",
        cfg.name,
        seconds_to_multi_user(&boots[0])
    );
    Ok((boots, serial, log))
}

#[test]
fn debian_appliance_commits_its_trial_boot_with_systemd() -> Result<()> {
    let bed = TestBed::new("debian_appliance_commits_its_trial_boot_with_systemd")?;
    let base = Base::get(bed.assets)?;
    if let Some(took) = base.built_in {
        eprintln!("DEBIAN mmdebstrap+prepare wall={:.1}", took.as_secs_f64());
    }
    let mut repo = Repo::create(&bed.work().join("repository"))?;
    let built = debian::build_image(bed.assets, base, 1, &repo.root_json, bed.work())?;
    let image_len = std::fs::metadata(&built.image)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "DEBIAN image stage+store-add={:.1} image={:.1} bytes={image_len} store_path={}",
        built.staged_in.as_secs_f64(),
        built.imaged_in.as_secs_f64(),
        built.store_path
    );
    eprintln!(
        "DEBIAN packages={}",
        base.package_versions()?.lines().count()
    );

    let started = Instant::now();
    let v2 = debian::build_image(bed.assets, base, 2, &repo.root_json, bed.work())?;
    repo.add(&built.out)?;
    repo.add(&v2.out)?;
    eprintln!(
        "DEBIAN release 2 and repository wall={:.1}",
        started.elapsed().as_secs_f64()
    );
    // The data partition: the repository at MIRROR_DIR (/data/repo).
    let data = bed.work().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mirror = data.join(debian::MIRROR_DIR.trim_start_matches("/data/"));
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&repo.dir)
        .arg(&mirror)
        .status()
        .unwrap();
    assert!(cp.success(), "copy the repository into the data partition");
    let disk = TestDisk::create(
        &bed.work().join("disk.img"),
        &debian::disk_layout(),
        Some(&data),
    )?;
    disk.write_slot(Slot::A, &built.image)?;
    disk.write_slot(Slot::B, &built.image)?;
    disk.set_slot(Slot::A, 1, 0, true)?;
    disk.set_slot(Slot::B, 2, 1, false)?;

    // Boot 1: the trial of b, committed by flipside-health.service.
    let trial = bed.vm_config("trial", &disk);
    let summary = BootSummary::system(Slot::B, true, 0, 1, "poweroff");
    boot_healthy(&bed, &trial, summary, "healthy: slot b committed")?;
    disk.assert_bits((1, 0, true), (2, 0, true), "after the trial boot")?;

    // Boot 2: b is proven now; the health unit runs and commits nothing; then one run of the
    // update unit installs release 2 into a.
    let mut proven = bed.vm_config("proven", &disk);
    proven.extra_cmdline.push("flipside.test-update".into());
    let summary = BootSummary::system(Slot::B, false, 0, 1, "poweroff");
    let verdict = "healthy: slot b is proven, nothing to commit";
    let (boots, serial, log) = boot_healthy(&bed, &proven, summary, verdict)?;
    assert_eq!(
        marker(&boots[0], "updater", "install", "code"),
        Some("0"),
        "{log}"
    );
    assert!(
        serial.contains("FLIPSIDE_RESULT event=installed slot=a version=2"),
        "{log}"
    );
    disk.assert_bits((2, 2, false), (1, 0, true), "after the update")?;
    Ok(())
}
