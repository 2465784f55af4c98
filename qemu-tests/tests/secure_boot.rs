//! Verified boot under QEMU with Secure Boot on: OVMF built for Secure Boot, our own PK, KEK
//! and db enrolled in each VM's variable store (`virt-fw-vars`), flipside-boot and every UKI
//! signed with our db key by `flipside_image_builder::secureboot` (what `flipside-build sign`
//! runs). The systems are the OTA appliance releases (the real `flipside` inside, steps from
//! the host's update server), started by UKIs of the harness' kernel and initramfs.
//!
//! | test | kernel-b | expected |
//! |---|---|---|
//! | `signed_chain_updates_v1_to_v2` | signed by us | v1 installs v2 into b; b boots on trial and is committed |
//! | `refused_kernels_fall_back_and_status_says_why` | signed by someone else; then ours with `.cmdline` changed after signing | LoadImage: SECURITY_VIOLATION; flipside-boot starts a; `flipside status` reports the refusal |
//! | `verity_refuses_a_changed_committed_root_and_falls_back` | ours, its `.cmdline` naming root-b's dm-verity root hash | b boots through dm-verity; after one byte of root-b is flipped on the disk, the initramfs finds it, marks b bad, and a boots |
//!
//! Each test prints `SCENARIO name boots=N wall=S`. Serial logs: `<target>/qemu-logs/<test>/`.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::chain;
use flipside_qemu_tests::markers::Boot;
use flipside_qemu_tests::ota::{OtaBoot, World, GUEST_PORT};
use flipside_qemu_tests::secureboot::{self, Keys};
use flipside_qemu_tests::server::{Step, UpdateServer};
use flipside_qemu_tests::uefi::{self, kernel_label};
use flipside_qemu_tests::{
    Appliance, Behaviour, BootSummary, DiskLayout, Ending, Error, GuestFwd, QemuExit, Result,
    TestBed, TestDisk, Vm,
};

/// Upper bound of one Secure Boot OVMF boot (SMM under TCG is slow) that may also install a
/// release, on a busy machine. A guard, not a measurement.
const BOOT: Duration = Duration::from_secs(300);

/// A UEFI disk whose ESP holds flipside-boot signed by `keys`'s db key.
fn secure_disk(bed: &TestBed, keys: &Keys) -> Result<TestDisk> {
    let app = secureboot::sign(
        &keys.ours.db,
        bed.assets.flipside_boot()?,
        &bed.work().join("flipside-boot.signed.efi"),
    )?;
    uefi::disk_with_app(bed, "disk", &DiskLayout::default(), &app)
}

/// One Secure Boot scenario: the OTA world, the update server, our keys, a UEFI disk whose ESP
/// holds flipside-boot signed by our db key, and our signed UKI in both kernel partitions.
struct Rig {
    bed: TestBed,
    world: &'static World,
    server: UpdateServer,
    keys: Keys,
    disk: TestDisk,
    /// The UKI of the harness' kernel and initramfs, signed by our db key.
    signed_uki: PathBuf,
}

impl Rig {
    fn new(test: &str) -> Result<Self> {
        let bed = TestBed::new(test)?;
        let world = World::get(bed.assets)?;
        let server = UpdateServer::start()?;
        let keys = Keys::generate(&bed)?;
        let work = bed.work().to_path_buf();
        let uki = uefi::build_uki(&bed, &work.join("uki.efi"), uefi::UKI_CMDLINE, 1)?;
        let signed_uki = secureboot::sign(&keys.ours.db, &uki, &work.join("uki.signed.efi"))?;
        let disk = secure_disk(&bed, &keys)?;
        for slot in Slot::ALL {
            disk.write_partition(&kernel_label(slot), &signed_uki)?;
        }
        Ok(Self {
            bed,
            world,
            server,
            keys,
            disk,
            signed_uki,
        })
    }

    fn provision(&self, slot: Slot, version: u64, bits: (u8, u8, bool)) -> Result<()> {
        self.disk.write_slot(slot, &self.world.image(version))?;
        self.disk.set_slot(slot, bits.0, bits.1, bits.2)
    }

    /// Boots until the guest powers off (reboots reset the VM; the variable store is kept
    /// across them, as on a device). Returns the VM and its exit; prints the scenario line.
    fn run(&self, name: &str, boots: u32, started: Instant) -> Result<(Vm, QemuExit)> {
        let mut cfg = self.bed.vm_config(name, &self.disk);
        cfg.firmware = Some(secureboot::firmware(&self.bed, name, &self.keys.ours)?);
        cfg.network = Some(GuestFwd {
            guest_port: GUEST_PORT,
            host_port: self.server.port(),
            busybox: self.bed.assets.busybox.clone(),
        });
        let mut vm = self.bed.start(&cfg)?;
        let exit = vm.wait_exit(BOOT * boots)?;
        eprintln!(
            "SCENARIO {name} boots={} wall={:.1}",
            vm.boots().len(),
            started.elapsed().as_secs_f64()
        );
        Ok((vm, exit))
    }
}

#[test]
fn signed_chain_updates_v1_to_v2() -> Result<()> {
    let started = Instant::now();
    let bed = TestBed::new("secure_boot_signed_chain_updates_v1_to_v2")?;
    let world = chain::World::get(bed.assets)?;
    // The chain's releases were built by `flipside-build image --secure-boot-key`: each UKI
    // carries our db signature (checked on the host with sbverify too).
    let keys = secureboot::chain_keys(&bed.assets.dir)?;
    for version in [1, 2] {
        flipside_image_builder::secureboot::verify(&keys.db.cert, &world.uki(version))
            .expect("a chain UKI signed by our db key");
    }
    let app = secureboot::sign(
        &keys.db,
        bed.assets.flipside_boot()?,
        &bed.work().join("flipside-boot.signed.efi"),
    )?;
    let disk = uefi::disk_with_app(&bed, "disk", &chain::disk_layout(), &app)?;
    let rig = chain::Rig {
        bed,
        world,
        server: UpdateServer::start()?,
        disk,
    };
    rig.provision(Slot::A, 1, (2, 0, true))?;
    rig.server.push_steps([
        Step::with_repo("install", &world.repo(chain::UpTo(2))),
        Step::new("reboot"),
        Step::new("status"),
        Step::new("poweroff"),
    ]);
    let mut cfg = rig.vm_config("update")?;
    cfg.firmware = Some(secureboot::firmware(&rig.bed, "update", &keys)?);
    let mut vm = rig.bed.start(&cfg)?;
    // Secure Boot OVMF (SMM) under TCG is slower than the chain's plain OVMF.
    let exit = vm.wait_exit((chain::INSTALL_BOOT + chain::BOOT) * 2)?;
    let log = vm.serial_log().display().to_string();
    eprintln!(
        "SCENARIO update boots={} wall={:.1}",
        vm.boots().len(),
        started.elapsed().as_secs_f64()
    );
    let (k1, k2) = (world.kernel_release(1), world.kernel_release(2));
    let rows: Vec<chain::Row> = vm.boots().iter().map(chain::Row::from_boot).collect();
    assert_eq!(
        rows,
        [
            chain::Row::new(Slot::A, false, 0, k1, Some(1), "reboot"),
            chain::Row::new(Slot::B, true, 1, k2, Some(2), "poweroff"),
        ],
        "serial log: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    let boots: Vec<OtaBoot> = vm.boots().iter().map(OtaBoot::from_boot).collect();
    for boot in vm.boots() {
        assert!(
            boot.find("boot", "fail").is_none(),
            "the firmware loaded every signed image; {log}"
        );
    }
    assert_eq!(
        boots[0].installed(&["slot", "version"]),
        Some(vec!["b", "2"]),
        "{log}"
    );
    let st = &boots[1].statuses[0];
    assert_eq!(st["running"], "b", "{st}");
    assert_eq!(st["last"]["event"], "committed", "{st}");
    assert!(st.get("refused_kernel").is_none(), "{st}");
    rig.disk
        .assert_bits((1, 0, true), (2, 0, true), "v2 committed in b")
}

#[test]
fn refused_kernels_fall_back_and_status_says_why() -> Result<()> {
    let started = Instant::now();
    let rig = Rig::new("secure_boot_refused_kernels_fall_back_and_status_says_why")?;
    rig.provision(Slot::A, 1, (1, 0, true))?;
    rig.provision(Slot::B, 2, (2, 0, true))?;
    let work = rig.bed.work();

    // Someone else's key: a well-formed signature that chains to nothing in db.
    let unsigned = uefi::build_uki(&rig.bed, &work.join("uki-b.efi"), uefi::UKI_CMDLINE, 2)?;
    let theirs = secureboot::sign(&rig.keys.theirs.db, &unsigned, &work.join("theirs.efi"))?;
    // Ours, with the command line changed after signing (`quiet` -> `QUIET`: same length, so
    // the PE layout is intact and only the signed digest disagrees).
    let signed = fs::read(&rig.signed_uki).map_err(Error::io("read", &rig.signed_uki))?;
    let altered_bytes = secureboot::alter_cmdline(&signed, "quiet panic=-1", "QUIET panic=-1")
        .expect("the UKI holds its command line");
    let altered = work.join("altered.efi");
    fs::write(&altered, altered_bytes).map_err(Error::io("write", &altered))?;
    assert!(
        flipside_image_builder::secureboot::verify(&rig.keys.ours.db.cert, &altered).is_err(),
        "sbverify refuses the altered UKI on the host too"
    );

    for (name, kernel_b) in [("other-key", &theirs), ("altered-cmdline", &altered)] {
        rig.disk.write_partition(&kernel_label(Slot::B), kernel_b)?;
        rig.server
            .push_steps([Step::new("status"), Step::new("poweroff")]);
        let (vm, exit) = rig.run(name, 1, started)?;
        assert_refused_then_a(&vm, exit, name);
        rig.disk.assert_bits(
            (1, 0, true),
            (2, 0, true),
            "a refused proven slot keeps its bits",
        )?;
    }
    Ok(())
}

/// One boot: b's kernel refused by the firmware, a started instead, and `flipside status` on a
/// naming the refusal.
fn assert_refused_then_a(vm: &Vm, exit: QemuExit, name: &str) {
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(boots.len(), 1, "{name}: {log}");
    let boot = &boots[0];
    assert_eq!(
        boot.firmware_events(),
        [
            "start",
            "select slot=b",
            "kernel slot=b",
            "boot slot=b",
            "fail slot=b",
            "select slot=a",
            "kernel slot=a",
            "boot slot=a"
        ],
        "{name}: {log}"
    );
    let fail = boot.find("boot", "fail").expect(&log);
    assert_eq!(fail.get("stage"), Some("load"), "{name}: {log}");
    // LoadImage refuses by the platform's policy with either status (UEFI 2.10 7.4: no image
    // handle, or a handle that must not be started); OVMF answers ACCESS_DENIED.
    let refusals = ["ACCESS_DENIED", "SECURITY_VIOLATION"];
    assert!(
        fail.get("status").is_some_and(|s| refusals.contains(&s)),
        "{name}: {log}"
    );
    let ota = OtaBoot::from_boot(boot);
    assert_eq!(
        ota.summary,
        BootSummary::system(Slot::A, false, 0, 1, "poweroff"),
        "{name}: {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff, "{name}");
    let st = &ota.statuses[0];
    assert_eq!(st["running"], "a", "{name}: {st}");
    let refused = &st["refused_kernel"];
    assert_eq!(refused["slot"], "b", "{name}: {st}");
    assert_eq!(
        refused["status"].as_str(),
        fail.get("status"),
        "{name}: {st}"
    );
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("not signed by a key in the firmware's db"),
        "{detail}"
    );
}

/// Release `version`'s image with its dm-verity tree appended (`flipside-verity format`, the
/// static binary the initramfs carries too) and a UKI, signed by our db key, whose command line
/// names the root hash.
/// Returns the image, the UKI and the length of the filesystem (the tree follows it).
fn verity_slot(bed: &TestBed, keys: &Keys, version: u64) -> Result<(PathBuf, PathBuf, u64)> {
    let image = bed.image(&Appliance::new("testapp", version, Behaviour::PowerOff))?;
    let len = fs::metadata(&image)
        .map_err(Error::io("stat", &image))?
        .len();
    let verity_image = bed.work().join(format!("root-{version}.verity.img"));
    fs::copy(&image, &verity_image).map_err(Error::io("copy", &image))?;
    let out = std::process::Command::new(&bed.assets.flipside_verity)
        .arg("format")
        .arg(&verity_image)
        .output()
        .map_err(Error::io("run", &bed.assets.flipside_verity))?;
    assert!(out.status.success(), "flipside-verity format: {out:?}");
    let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // flipside.verity-bench: the initramfs also times reading the root without verity.
    let cmdline = format!("{} {word} flipside.verity-bench", uefi::UKI_CMDLINE);
    let work = bed.work();
    let uki = uefi::build_uki(
        bed,
        &work.join(format!("uki-{version}.efi")),
        &cmdline,
        version,
    )?;
    let signed = secureboot::sign(
        &keys.ours.db,
        &uki,
        &work.join(format!("uki-{version}.signed.efi")),
    )?;
    Ok((verity_image, signed, len))
}

#[test]
fn verity_refuses_a_changed_committed_root_and_falls_back() -> Result<()> {
    let started = Instant::now();
    let bed = TestBed::new("secure_boot_verity_refuses_a_changed_committed_root_and_falls_back")?;
    let keys = Keys::generate(&bed)?;
    let disk = secure_disk(&bed, &keys)?;
    let mut data_len = 0;
    for (slot, version) in [(Slot::A, 1), (Slot::B, 2)] {
        let (image, uki, len) = verity_slot(&bed, &keys, version)?;
        data_len = len;
        disk.write_slot(slot, &image)?;
        disk.write_partition(&kernel_label(slot), &uki)?;
    }
    // Both committed, b preferred: as after an update to v2.
    disk.set_slot(Slot::A, 1, 0, true)?;
    disk.set_slot(Slot::B, 2, 0, true)?;
    let run = |name: &str, boots: u32| -> Result<(Vm, QemuExit)> {
        let mut cfg = bed.vm_config(name, &disk);
        cfg.firmware = Some(secureboot::firmware(&bed, name, &keys.ours)?);
        let mut vm = bed.start(&cfg)?;
        let exit = vm.wait_exit(BOOT * boots)?;
        eprintln!(
            "SCENARIO verity-{name} boots={} wall={:.1}",
            vm.boots().len(),
            started.elapsed().as_secs_f64()
        );
        Ok((vm, exit))
    };

    let (vm, exit) = run("intact", 1)?;
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(
        boots.iter().map(Boot::summary).collect::<Vec<_>>(),
        [BootSummary::system(Slot::B, false, 0, 2, "poweroff")],
        "{log}"
    );
    let verity = boots[0].find("initrd", "verity").expect(&log);
    assert_eq!(verity.get("result"), Some("ok"), "{log}");
    assert!(
        verity.get("dev").is_some_and(|d| d.starts_with("/dev/dm-")),
        "mounted from the verity device; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    report_cost(&bed, "intact", &boots[0]);

    // One byte in the middle of b's root filesystem, between boots.
    disk.flip_slot_byte(Slot::B, data_len / 2)?;
    let (vm, exit) = run("flipped", 2)?;
    let log = vm.serial_log().display().to_string();
    let boots = vm.boots();
    assert_eq!(boots.len(), 2, "{log}");
    let verity = boots[0].find("initrd", "verity").expect(&log);
    assert_eq!(
        (verity.get("slot"), verity.get("result")),
        (Some("b"), Some("corrupt")),
        "{log}"
    );
    assert_eq!(
        boots[0].ending(),
        Ending::InitrdFailed {
            stage: "verity".into(),
            action: "reboot".into()
        },
        "{log}"
    );
    assert!(
        boots[0].find("system", "up").is_none(),
        "nothing of b ran; {log}"
    );
    // The untouched slot boots normally, through dm-verity too.
    assert_eq!(
        boots[1].summary(),
        BootSummary::system(Slot::A, false, 0, 1, "poweroff"),
        "{log}"
    );
    let verity = boots[1].find("initrd", "verity").expect(&log);
    assert_eq!(verity.get("result"), Some("ok"), "{log}");
    assert_eq!(exit, QemuExit::PoweredOff);
    disk.assert_bits((1, 0, true), (0, 0, false), "b marked bad by the initramfs")?;
    Ok(())
}

/// Prints what dm-verity cost in a boot: the initramfs' reads of the root without and with
/// verity (`verity-bench`), and the seconds from the slot's selection to the verity device
/// being open, from the VM's timeline.
fn report_cost(bed: &TestBed, name: &str, boot: &Boot) {
    let bench = boot.find("initrd", "verity-bench");
    let field = |k: &str| bench.and_then(|m| m.get(k)).unwrap_or("?").to_string();
    let timeline =
        fs::read_to_string(bed.logs.join(format!("{name}.timeline.log"))).unwrap_or_default();
    let at = |needle: &str| {
        timeline
            .lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.trim_start().split_once("s ")?.0.parse::<f64>().ok())
    };
    let (select, open, system) = (
        at("FLIPSIDE: initrd select"),
        at("FLIPSIDE: initrd verity slot"),
        at("FLIPSIDE: system up"),
    );
    eprintln!(
        "VERITY-COST {name}: root bytes={} read raw_ms={} verity_ms={}; select at {select:?} s, \
         verity open at {open:?} s, system at {system:?} s (QEMU start = 0, TCG)",
        field("bytes"),
        field("raw_ms"),
        field("verity_ms"),
    );
}
