//! Releases with a kernel part on devices with a kernel partition per slot (flipside-boot),
//! through the real `flipside` binary: the UKI and the root image are written, verified and
//! armed as one slot; a release without a kernel part is refused there before any write; a
//! device that keeps its kernel outside the slots installs the root alone; a bad kernel chunk
//! leaves the slot unbootable.

mod common;

use common::{code, kernel_bytes, kernel_release, Setup, World, SENTINEL};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_test_support::server::Server;

fn kernel_world() -> World {
    World::new(Setup {
        kernels: true,
        ..Setup::default()
    })
}

#[test]
fn kernel_and_root_are_installed_into_one_slot_and_armed_together() {
    let w = kernel_world();
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.write_kernel(Slot::B, &vec![SENTINEL; 1 << 20]);

    let run = w.run(&["install"]);
    run.expect(code::OK);
    let result = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FLIPSIDE_RESULT"))
        .unwrap();
    assert!(
        result.contains(&format!("kernel={}", kernel_release(2))),
        "{result}"
    );

    // Both parts of slot b hold release 2, byte for byte; slot a is untouched.
    let kernel = kernel_bytes(2);
    assert!(w.kernel_partition_bytes(Slot::B)[..kernel.len()] == kernel[..]);
    assert!(w.kernel_partition_bytes(Slot::A)[..kernel.len()] == kernel_bytes(1)[..]);
    let image = w.release(2).image_bytes();
    assert!(w.read_slot(Slot::B, image.len() as u64) == image);
    let state = w.boot_state();
    assert_eq!(state.boots_next().unwrap(), Slot::B);
    assert!(state.attrs(Slot::B).is_trial_armed());

    // The factory slot has no recorded kernel index, so the whole kernel bundle was fetched.
    let kernel_bundle = w.release(2).release.kernel.as_ref().unwrap().bundle.length;
    let fetched = field(result, "fetched");
    assert!(
        fetched >= kernel_bundle,
        "{result} (kernel bundle {kernel_bundle})"
    );

    // status shows each slot's kernel release next to its version.
    let s = w.status_json();
    let b = &s["slots"][1];
    assert_eq!(b["release"]["version"], 2);
    assert_eq!(b["release"]["kernel_release"], kernel_release(2));
    let text = w.run(&["status"]);
    assert!(
        text.stdout
            .contains(&format!("kiosk 2 (1.2), kernel {}", kernel_release(2))),
        "{}",
        text.stdout
    );

    // A second install of the next release seeds the kernel delta from slot b's record.
    w.set_attrs(Slot::B, BootAttrs::new(2, 0, true).unwrap());
    w.set_attrs(Slot::A, BootAttrs::new(1, 0, true).unwrap());
    w.set_running(Slot::B, 2, common::HARDWARE);
    let mut w = w;
    w.publish(3, common::HARDWARE, 3 << 20);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    let kernel = kernel_bytes(3);
    assert!(w.kernel_partition_bytes(Slot::A)[..kernel.len()] == kernel[..]);
    let result = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FLIPSIDE_RESULT"))
        .unwrap();
    // Slot b's kernel index was recorded by the first install: the next kernel is a delta.
    let kernel_bundle = w.release(3).release.kernel.as_ref().unwrap().bundle.length;
    assert!(
        field(result, "fetched") < kernel_bundle / 2,
        "the kernel delta should copy most of the UKI: {result} (kernel bundle {kernel_bundle})"
    );
}

fn field(result: &str, name: &str) -> u64 {
    result
        .split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn release_without_a_kernel_part_is_refused_where_slots_carry_kernels() {
    let mut w = kernel_world();
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.kernels = false;
    w.publish(3, common::HARDWARE, 3 << 20);
    w.write_kernel(Slot::B, &vec![SENTINEL; 1 << 20]);
    let gpt = w.gpt_bytes();
    let kernel_b = w.kernel_partition_bytes(Slot::B);

    let run = w.run(&["install"]);
    run.expect(code::INCOMPATIBLE);
    assert!(
        run.stderr.contains("carries no kernel part"),
        "{}",
        run.stderr
    );
    assert_eq!(w.gpt_bytes(), gpt, "the table changed");
    assert!(w.kernel_partition_bytes(Slot::B) == kernel_b);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn device_with_the_kernel_outside_the_slots_installs_the_root_alone() {
    let mut w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.kernels = true;
    w.publish(3, common::HARDWARE, 3 << 20);
    assert!(w.release(3).release.kernel.is_some());

    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(!run.stdout.contains("kernel="), "{}", run.stdout);
    let image = w.release(3).image_bytes();
    assert!(w.read_slot(Slot::B, image.len() as u64) == image);
    let s = w.status_json();
    assert!(s["slots"][1]["release"].get("kernel_release").is_none());
}

#[test]
fn a_bad_kernel_chunk_leaves_the_slot_unbootable() {
    let w = kernel_world();
    // Flip one byte in the middle of the published kernel bundle.
    let name = &w.release(2).release.kernel.as_ref().unwrap().bundle.name;
    let file = std::fs::read_dir(w.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(name.as_str()))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);

    let run = w.run(&["install"]);
    run.expect(code::CHUNK_HASH);
    let state = w.boot_state();
    assert_eq!(
        (
            state.attrs(Slot::B).priority(),
            state.attrs(Slot::B).tries(),
            state.attrs(Slot::B).successful()
        ),
        (0, 0, false)
    );
    assert_eq!(state.boots_next().unwrap(), Slot::A);
    assert!(w.kernel_partition_bytes(Slot::A)[..1 << 20] == kernel_bytes(1)[..1 << 20]);
}
