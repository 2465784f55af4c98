//! Real boots of the virtual appliance under QEMU (KVM when it works, else TCG). Each test
//! builds its images, provisions a disk, boots, and compares the boots seen on the serial
//! console with a table of expected boots; the GPT bits afterwards are read with the
//! bootloader-hooks library (and with cgpt where interop is the point). Serial logs stay in
//! `<target>/qemu-logs/<test>/`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use flipside_bootloader_hooks::Slot;
use flipside_qemu_tests::{
    Appliance, Behaviour, BootSummary, Ending, GuestFwd, OnReboot, QemuExit, Result, TestBed,
    BOOT_TIMEOUT,
};

/// The isa-debug-exit code the test systems use for "ran to the end".
const DONE: u8 = 42;

#[test]
fn image_from_flipside_build_boots_from_root_a() -> Result<()> {
    let bed = TestBed::new("image_from_flipside_build_boots_from_root_a")?;
    let image = bed.image(&Appliance::new("testapp", 1, Behaviour::DebugExit(DONE)))?;
    let disk = bed.disk("disk")?;
    disk.write_slot(Slot::A, &image)?;
    disk.set_slot(Slot::A, 2, 0, true)?;

    let mut cfg = bed.vm_config("boot", &disk);
    cfg.on_reboot = OnReboot::Exit;
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT)?;

    assert_eq!(
        vm.boot_summaries(),
        [BootSummary::system(Slot::A, false, 0, 1, "debug-exit")],
        "serial log: {}",
        vm.serial_log().display()
    );
    assert_eq!(exit, QemuExit::DebugExit(DONE));
    // The data partition was found by its label and mounted at /data.
    assert!(vm.boots()[0].find("initrd", "data").is_some());
    // A proven slot is never written by the selector.
    assert_eq!(disk.bits(Slot::A)?, (2, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    Ok(())
}

#[test]
fn boots_the_slot_cgpt_chose() -> Result<()> {
    let bed = TestBed::new("boots_the_slot_cgpt_chose")?;
    let v1 = bed.image(&Appliance::new("testapp", 1, Behaviour::PowerOff))?;
    let v2 = bed.image(&Appliance::new("testapp", 2, Behaviour::PowerOff))?;
    let disk = bed.disk("disk")?;
    disk.write_slot(Slot::A, &v1)?;
    disk.write_slot(Slot::B, &v2)?;

    // Both proven, B with the higher priority: B boots. Then cgpt raises A above it.
    let steps = [
        ("b-preferred", (1, 2), Slot::B, 2),
        ("a-preferred", (3, 2), Slot::A, 1),
    ];
    for (name, (pa, pb), slot, version) in steps {
        disk.cgpt_set_slot(Slot::A, pa, 0, true)?;
        disk.cgpt_set_slot(Slot::B, pb, 0, true)?;
        let mut cfg = bed.vm_config(name, &disk);
        cfg.on_reboot = OnReboot::Exit;
        let mut vm = bed.start(&cfg)?;
        let exit = vm.wait_exit(BOOT_TIMEOUT)?;
        assert_eq!(
            vm.boot_summaries(),
            [BootSummary::system(slot, false, 0, version, "poweroff")],
            "{name}: serial log {}",
            vm.serial_log().display()
        );
        assert_eq!(exit, QemuExit::PoweredOff, "{name}");
        assert_eq!(disk.cgpt_slot(Slot::A)?, (pa, 0, true), "{name}");
        assert_eq!(disk.cgpt_slot(Slot::B)?, (pb, 0, true), "{name}");
    }
    Ok(())
}

#[test]
fn trial_slot_that_never_succeeds_falls_back() -> Result<()> {
    let bed = TestBed::new("trial_slot_that_never_succeeds_falls_back")?;
    let good = bed.image(&Appliance::new("testapp", 1, Behaviour::PowerOff))?;
    let bad = bed.image(&Appliance::new("testapp", 2, Behaviour::Reboot))?;
    let disk = bed.disk("disk")?;
    disk.write_slot(Slot::A, &good)?;
    disk.write_slot(Slot::B, &bad)?;
    // As an updater leaves it: A proven fallback, B armed for 2 trial boots.
    disk.set_slot(Slot::A, 1, 0, true)?;
    disk.set_slot(Slot::B, 2, 2, false)?;

    let cfg = bed.vm_config("cycle", &disk);
    assert_eq!(cfg.on_reboot, OnReboot::Reset);
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT * 3)?;

    let expected = [
        BootSummary::system(Slot::B, true, 1, 2, "reboot"),
        BootSummary::system(Slot::B, true, 0, 2, "reboot"),
        BootSummary::system(Slot::A, false, 0, 1, "poweroff"),
    ];
    assert_eq!(
        vm.boot_summaries(),
        expected,
        "serial log: {}",
        vm.serial_log().display()
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::A)?, (1, 0, true));
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    assert_eq!(disk.cgpt_slot(Slot::B)?, (0, 0, false));
    Ok(())
}

#[test]
fn hung_trial_is_reset_by_the_watchdog_and_falls_back() -> Result<()> {
    let bed = TestBed::new("hung_trial_is_reset_by_the_watchdog_and_falls_back")?;
    let good = bed.image(&Appliance::new("testapp", 1, Behaviour::PowerOff))?;
    let hangs = bed.image(&Appliance::new("testapp", 2, Behaviour::Hang))?;
    let disk = bed.disk("disk")?;
    disk.write_slot(Slot::A, &good)?;
    disk.write_slot(Slot::B, &hangs)?;
    disk.set_slot(Slot::A, 1, 0, true)?;
    disk.set_slot(Slot::B, 2, 1, false)?;

    let mut cfg = bed.vm_config("watchdog", &disk);
    cfg.watchdog_secs = Some(5);
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT * 2)?;

    let expected = [
        BootSummary::system(Slot::B, true, 0, 2, "hang"),
        BootSummary::system(Slot::A, false, 0, 1, "poweroff"),
    ];
    assert_eq!(
        vm.boot_summaries(),
        expected,
        "serial log: {}",
        vm.serial_log().display()
    );
    for boot in vm.boots() {
        assert!(
            boot.find("initrd", "watchdog").is_some(),
            "boot {} armed no watchdog",
            boot.number
        );
    }
    assert_eq!(exit, QemuExit::PoweredOff);
    assert_eq!(disk.bits(Slot::B)?, (0, 0, false));
    Ok(())
}

#[test]
fn no_bootable_slot_powers_off_with_a_marker() -> Result<()> {
    let bed = TestBed::new("no_bootable_slot_powers_off_with_a_marker")?;
    let disk = bed.disk("disk")?;
    let mut cfg = bed.vm_config("boot", &disk);
    cfg.on_reboot = OnReboot::Exit;
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT)?;
    let boots = vm.boots();
    assert_eq!(boots.len(), 1, "serial log: {}", vm.serial_log().display());
    assert_eq!(
        boots[0].ending(),
        Ending::InitrdFailed {
            stage: "select".into(),
            action: "poweroff".into()
        }
    );
    assert_eq!(
        boots[0].find("initrd", "fail").and_then(|m| m.get("code")),
        Some("3")
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    Ok(())
}

/// A one-file HTTP server on 127.0.0.1 that answers every request with `body`.
fn serve(body: &'static str) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

#[test]
fn guest_reaches_a_host_server_through_guestfwd() -> Result<()> {
    let bed = TestBed::new("guest_reaches_a_host_server_through_guestfwd")?;
    let port = serve("hello-from-host\nsecond-line\n")
        .map_err(flipside_qemu_tests::Error::io("serve on", "127.0.0.1"))?;
    let url = format!(
        "http://{}/hello",
        flipside_qemu_tests::vm::GUEST_SERVER_ADDR
    );
    let image = bed.image(&Appliance::new("testapp", 1, Behaviour::Fetch { url }))?;
    let disk = bed.disk("disk")?;
    disk.write_slot(Slot::A, &image)?;
    disk.set_slot(Slot::A, 2, 0, true)?;

    let mut cfg = bed.vm_config("fetch", &disk);
    cfg.on_reboot = OnReboot::Exit;
    cfg.network = Some(GuestFwd {
        guest_port: 80,
        host_port: port,
        busybox: bed.assets.busybox.clone(),
    });
    let mut vm = bed.start(&cfg)?;
    let exit = vm.wait_exit(BOOT_TIMEOUT)?;
    let lines: Vec<_> = vm
        .markers()
        .iter()
        .filter(|m| m.is("system", "body"))
        .filter_map(|m| m.get("line").map(str::to_string))
        .collect();
    assert_eq!(
        lines,
        ["hello-from-host", "second-line"],
        "serial log: {}",
        vm.serial_log().display()
    );
    assert_eq!(exit, QemuExit::PoweredOff);
    Ok(())
}
