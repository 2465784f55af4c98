//! SIGKILL in the middle of an install (a slow server gives it time): the old slot still boots
//! (the new one is P=0), and the next install reuses what was written and downloads less than
//! the whole bundle. The install journal holds the durable high-water mark of the writes.

mod common;

use std::time::{Duration, Instant};

use common::{code, Setup, World};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_test_support::server::{Fault, Server};

#[test]
fn sigkill_mid_install_keeps_the_old_slot_and_the_retry_downloads_less() {
    let w = World::new(Setup {
        running_image: false,
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let bundle = w.release(2).release.bundle.length;
    server.set_fault(
        ".bundle",
        Fault::Throttle {
            bytes_per_sec: bundle / 10,
        },
    );

    let mut child = w.command(&["install"]).spawn().unwrap();
    let started = Instant::now();
    // Kill once well over half of the bundle has been sent.
    while server.bytes_sent() < bundle * 6 / 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the install ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the slow server stalled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), BootAttrs::new(0, 0, false).unwrap());
    let (choice, _) = state.select().unwrap();
    assert_eq!(choice.slot, Slot::A);
    let s: serde_json::Value = serde_json::from_str(&w.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["unfinished_install"]["slot"], "b");
    // The writer synced the partition on its 2 s schedule while the download ran for seconds:
    // the journal names what a power cut (unlike this kill) could not have taken away.
    let synced = s["unfinished_install"]["synced"]["root"]
        .as_u64()
        .unwrap_or(0);
    assert!(synced > 0, "no durable high-water mark: {s}");

    server.set_fault(".bundle", Fault::None);
    server.reset_count();
    let run = w.run(&["install"]);
    run.expect(code::OK);
    let sent = server.bytes_sent();
    assert!(
        sent < bundle,
        "the retry downloaded {sent} of {bundle} bytes"
    );
    assert!(run.result_field("reused") > 0);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert_eq!(
        w.boot_state().attrs(Slot::B),
        BootAttrs::new(2, 3, false).unwrap()
    );
}
