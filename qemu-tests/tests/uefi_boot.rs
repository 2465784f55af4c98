//! Real UEFI boots under QEMU: OVMF runs flipside-boot from the ESP, flipside-boot applies the
//! boot rules to the GPT bits on root-a/root-b, records a consumed try, and starts the unified
//! kernel image from kernel-a/kernel-b; the initramfs takes the slot from `flipside.slot=`
//! and mounts that root. The disk alone is given to QEMU. Serial logs (with a timeline) stay
//! in `<target>/qemu-logs/<test>/`.

use std::fs;
use std::path::{Path, PathBuf};

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::markers::Boot;
use flipside_qemu_tests::uefi::{self, kernel_label};
use flipside_qemu_tests::{
    Appliance, Behaviour, BootSummary, OnReboot, QemuExit, Result, TestBed, TestDisk, Vm,
    BOOT_TIMEOUT,
};

/// Slot images: system version 1 for `a` and 2 for `b`, each powering off.
fn images(bed: &TestBed) -> Result<[PathBuf; 2]> {
    Ok([
        bed.image(&Appliance::new("testapp", 1, Behaviour::PowerOff))?,
        bed.image(&Appliance::new("testapp", 2, Behaviour::PowerOff))?,
    ])
}

/// A UEFI disk `<name>.img` with `images` in root-a and root-b and `uki` in both kernel
/// partitions.
fn provisioned(bed: &TestBed, name: &str, uki: &Path, images: &[PathBuf; 2]) -> Result<TestDisk> {
    let disk = uefi::disk(bed, name)?;
    for (slot, image) in Slot::ALL.into_iter().zip(images) {
        disk.write_slot(slot, image)?;
        disk.write_partition(&kernel_label(slot), uki)?;
    }
    Ok(disk)
}

fn uki(bed: &TestBed) -> Result<PathBuf> {
    uefi::build_uki(bed, &bed.work().join("uki.efi"), uefi::UKI_CMDLINE, 1)
}

/// Boots `disk` once through OVMF (QEMU exits on the guest's poweroff or reboot) and prints
/// the stage times from the VM's timeline.
fn boot_once(bed: &TestBed, name: &str, disk: &TestDisk) -> Result<(Vm, QemuExit)> {
    let mut cfg = uefi::vm_config(bed, name, disk)?;
    cfg.on_reboot = OnReboot::Exit;
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT)?;
    let timeline = bed.logs.join(format!("{name}.timeline.log"));
    let t = uefi::stage_times(&fs::read_to_string(&timeline).unwrap_or_default());
    eprintln!(
        "UEFI-STAGES {name}: flipside-boot at {:?} s, kernel image loaded at {:?} s, \
         initramfs at {:?} s, system at {:?} s (QEMU start = 0; {})",
        t.flipside_boot,
        t.load_kernel,
        t.initrd,
        t.system,
        timeline.display()
    );
    Ok((vm, exit))
}

fn only_boot(vm: &Vm) -> Boot {
    let boots = vm.boots();
    assert_eq!(
        boots.len(),
        1,
        "one boot expected; serial log {}",
        vm.serial_log().display()
    );
    boots.into_iter().next().unwrap_or_else(|| unreachable!())
}

#[test]
fn flipside_boot_boots_the_slot_cgpt_chose() -> Result<()> {
    let bed = TestBed::new("flipside_boot_boots_the_slot_cgpt_chose")?;
    let uki = uki(&bed)?;
    let disk = provisioned(&bed, "disk", &uki, &images(&bed)?)?;
    disk.cgpt_set_slot(Slot::A, 1, 0, true)?;
    disk.cgpt_set_slot(Slot::B, 2, 0, true)?;

    let (vm, exit) = boot_once(&bed, "b-preferred", &disk)?;
    let boot = only_boot(&vm);
    let log = vm.serial_log().display().to_string();
    let select = boot.find("boot", "select").expect(&log);
    assert_eq!(
        (
            select.get("slot"),
            select.get("trial"),
            select.get("tries_left"),
            select.get("kernel")
        ),
        (Some("b"), Some("0"), Some("0"), Some("kernel-b")),
        "{log}"
    );
    assert_eq!(
        boot.firmware_events(),
        ["start", "select slot=b", "kernel slot=b", "boot slot=b"],
        "a proven slot needs no write; {log}"
    );
    // The initramfs took flipside-boot's choice and mounted root-b (partition 2), whose system
    // is version 2.
    assert_eq!(
        boot.summary(),
        BootSummary::system(Slot::B, false, 0, 2, "poweroff"),
        "{log}"
    );
    // SetVariable(FlipsideSlot) succeeded: flipside-boot warns when it does not.
    assert!(boot.find("boot", "warning:").is_none(), "{log}");
    let initrd = boot.find("initrd", "select").expect(&log);
    assert_eq!(initrd.get("by"), Some("flipside-boot"), "{log}");
    assert_eq!(initrd.get("partnum"), Some("2"), "{log}");
    let partuuid = disk.boot_state()?.slot(Slot::B).partition.partuuid;
    assert_eq!(
        initrd.get("partuuid"),
        Some(partuuid.hyphenated().to_string().as_str()),
        "{log}"
    );
    let kernel = boot.find("boot", "kernel").expect(&log);
    assert_eq!(
        kernel.get("bytes"),
        Some(
            fs::metadata(&uki)
                .map(|m| m.len().to_string())
                .unwrap_or_default()
                .as_str()
        ),
        "the image handed to LoadImage is the UKI trimmed to its exact length; {log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.cgpt_slot(Slot::A)?, (1, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 0, true));
    Ok(())
}

#[test]
fn flipside_boot_records_the_trial_try_before_booting() -> Result<()> {
    let bed = TestBed::new("flipside_boot_records_the_trial_try_before_booting")?;
    let uki = uki(&bed)?;
    let disk = provisioned(&bed, "disk", &uki, &images(&bed)?)?;
    // As the updater leaves it: a proven fallback, b armed for 2 trial boots.
    disk.set_slot(Slot::A, 1, 0, true)?;
    disk.set_slot(Slot::B, 2, 2, false)?;

    let (vm, exit) = boot_once(&bed, "trial", &disk)?;
    let boot = only_boot(&vm);
    let log = vm.serial_log().display().to_string();
    assert_eq!(
        boot.firmware_events(),
        [
            "start",
            "select slot=b",
            "commit slot=b",
            "kernel slot=b",
            "boot slot=b"
        ],
        "the try is written before the kernel is read and started; {log}"
    );
    let commit = boot.find("boot", "commit").expect(&log);
    assert_eq!(commit.get("attrs"), Some("P=2,T=1,S=0"), "{log}");
    assert_eq!(commit.get("was"), Some("P=2,T=2,S=0"), "{log}");
    // The initramfs did not consume a second try: it reports the bits flipside-boot left.
    assert_eq!(
        boot.summary(),
        BootSummary::system(Slot::B, true, 1, 2, "poweroff"),
        "{log}"
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::B)?, (2, 1, false));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 1, false));
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.cgpt_slot(Slot::A)?, (1, 0, true));
    Ok(())
}

#[test]
fn flipside_boot_falls_back_when_a_kernel_cannot_be_loaded() -> Result<()> {
    let bed = TestBed::new("flipside_boot_falls_back_when_a_kernel_cannot_be_loaded")?;
    let uki = uki(&bed)?;

    // kernel-b is not a kernel image at all (garbage): flipside-boot refuses it itself; then
    // a UKI for another machine (arm64 in its COFF header): the firmware's LoadImage refuses it.
    let garbage = bed.work().join("garbage.bin");
    fs::write(&garbage, b"this is no kernel image. ".repeat(4096))
        .map_err(flipside_qemu_tests::Error::io("write", &garbage))?;
    let mut foreign = fs::read(&uki).map_err(flipside_qemu_tests::Error::io("read", &uki))?;
    let pe = u32::from_le_bytes([foreign[0x3c], foreign[0x3d], foreign[0x3e], foreign[0x3f]]);
    let machine = pe as usize + 4;
    foreign[machine..machine + 2].copy_from_slice(&0xaa64u16.to_le_bytes());
    let foreign_path = bed.work().join("foreign.efi");
    fs::write(&foreign_path, &foreign)
        .map_err(flipside_qemu_tests::Error::io("write", &foreign_path))?;

    let images = images(&bed)?;
    for (name, bad, stage) in [
        ("garbage", &garbage, "kernel"),
        ("foreign-machine", &foreign_path, "load"),
    ] {
        let disk = provisioned(&bed, name, &uki, &images)?;
        disk.write_partition(&kernel_label(Slot::B), bad)?;
        // b is the preferred *proven* slot: its bits must survive the failure untouched.
        disk.cgpt_set_slot(Slot::A, 1, 0, true)?;
        disk.cgpt_set_slot(Slot::B, 2, 0, true)?;

        let (vm, exit) = boot_once(&bed, name, &disk)?;
        let boot = only_boot(&vm);
        let log = vm.serial_log().display().to_string();
        let mut expected = vec!["start", "select slot=b"];
        if stage == "load" {
            expected.extend(["kernel slot=b", "boot slot=b"]);
        }
        expected.extend([
            "fail slot=b",
            "select slot=a",
            "kernel slot=a",
            "boot slot=a",
        ]);
        assert_eq!(boot.firmware_events(), expected, "{name}: {log}");
        let fail = boot.find("boot", "fail").expect(&log);
        assert_eq!(fail.get("stage"), Some(stage), "{name}: {log}");
        assert_eq!(fail.get("action"), Some("fallback"), "{name}: {log}");
        let reason = boot
            .markers
            .iter()
            .find(|m| m.is("boot", "error:"))
            .map(|m| m.to_string());
        assert!(reason.is_some(), "{name}: no explanation; {log}");
        let fallback = boot
            .markers
            .iter()
            .filter(|m| m.is("boot", "select"))
            .nth(1)
            .expect(&log);
        assert_eq!(fallback.get("reason"), Some("fallback"), "{name}: {log}");
        assert_eq!(
            boot.summary(),
            BootSummary::system(Slot::A, false, 0, 1, "poweroff"),
            "{name}: {log}"
        );
        assert_eq!(exit, QemuExit::PoweredOff, "{name}");
        assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 0, true), "{name}");
        assert_eq!(disk.cgpt_slot(Slot::A)?, (1, 0, true), "{name}");
        assert_eq!(disk.bits(Slot::B)?, (2, 0, true), "{name}");
    }
    Ok(())
}
