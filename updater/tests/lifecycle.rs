//! The update life cycle through the `flipside` command line against real repositories, GPT
//! disk images made by sgdisk, and real HTTP servers (nginx for real Range semantics, and the
//! project's own): check, install (with a delta from the running slot), trial boot, health
//! check, commit or rejection, manual rollback, status, refusals before any write.

mod common;

use std::process::Command;

use common::nginx::Nginx;
use common::{code, Setup, World, HARDWARE, SENTINEL};
use flipside_bootloader_hooks::{efivar, BootAttrs, Slot};
use flipside_repository::AddOptions;
use flipside_test_support::server::Server;

fn attrs(p: u8, t: u8, s: bool) -> BootAttrs {
    BootAttrs::new(p, t, s).unwrap()
}

#[test]
fn install_from_nginx_then_health_check_commits() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    w.write_config(&[nginx.url()], 3);

    let check = w.run(&["check"]);
    check.expect(code::OK);
    assert!(
        check.stdout.contains("update available: kiosk 2"),
        "{}",
        check.stdout
    );

    let run = w.run(&["install"]);
    run.expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), attrs(2, 3, false));
    assert_eq!(state.attrs(Slot::A), attrs(1, 0, true));
    assert_eq!(state.boots_next().unwrap(), Slot::B);
    // cgpt reads the same bits.
    let cgpt = Command::new("cgpt")
        .args(["show", "-i", "2", "-P"])
        .arg(&w.disk)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cgpt.stdout).trim(), "2");

    // A delta: chunks shared with release 1 came from slot a, so less than the bundle was
    // downloaded; the read-back bypassed the page cache with O_DIRECT (ext4).
    let bundle = w.release(2).release.bundle.length;
    assert!(run.result_field("copied") > 0, "{}", run.stdout);
    assert!(run.result_field("fetched") < bundle, "{}", run.stdout);
    assert_eq!(run.result_str("readback"), "Direct");
    assert!(
        run.stdout.contains("FLIPSIDE_PROGRESS phase=write"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("FLIPSIDE_PROGRESS phase=verify"),
        "{}",
        run.stdout
    );
    assert!(
        nginx.access_log().contains("\" 206 "),
        "{}",
        nginx.access_log()
    );

    let s = w.status_json();
    assert_eq!(s["trial_pending"], true);
    assert_eq!(s["boots_next"], "b");
    assert_eq!(s["slots"][1]["release"]["version"], 2);
    assert_eq!(s["slots"][1]["release"]["source"], "installed");
    assert_eq!(s["slots"][0]["release"]["source"], "running-system");
    assert_eq!(s["last"]["event"], "installed");

    // mark-good acts only on a slot running on trial: slot a is proven.
    w.run(&["mark-good"]).expect(code::STATE);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 3, false));

    // Power-up: firmware consumes a try and boots b; the health checks pass and commit it.
    assert_eq!(w.reboot(|s| if s == Slot::B { 2 } else { 1 }), Slot::B);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 2, false));
    w.add_check("10-ok", "exit 0");
    let health = w.run(&["health"]);
    health.expect(code::OK);
    assert!(health.stdout.contains("committed"), "{}", health.stdout);
    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), attrs(2, 0, true));
    assert_eq!(state.attrs(Slot::A), attrs(1, 0, true));
    let s = w.status_json();
    assert_eq!(s["last"]["event"], "committed");
    assert_eq!(s["running"], "b");
    assert_eq!(s["running_on_trial"], false);

    let check = w.run(&["check"]);
    check.expect(code::OK);
    assert!(check.stdout.contains("up to date"), "{}", check.stdout);
    w.run(&["install"]).expect(code::OK);

    // Manual rollback to the other proven slot, and back.
    w.run(&["rollback"]).expect(code::OK);
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::A);
    assert_eq!(w.status_json()["last"]["event"], "rolled-back");
    w.run(&["rollback"]).expect(code::OK);
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::B);
    let text = w.run(&["status"]);
    text.expect(code::OK);
    assert!(
        text.stdout.contains("slot b: partition 2 (root-b"),
        "{}",
        text.stdout
    );
}

#[test]
fn failed_health_check_marks_bad_and_reboots_into_the_old_slot() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.run(&["install"]).expect(code::OK);
    assert_eq!(w.reboot(|s| if s == Slot::B { 2 } else { 1 }), Slot::B);
    w.add_check("10-ok", "exit 0");
    w.add_check("20-broken", "echo broken >&2; exit 1");
    let run = w.run(&["health"]);
    run.expect(code::HEALTH);
    assert!(run.stderr.contains("20-broken"), "{}", run.stderr);
    assert!(w.rebooted.exists(), "the reboot command did not run");
    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), attrs(0, 0, false));
    assert_eq!(state.boots_next().unwrap(), Slot::A);
    let s = w.status_json();
    assert_eq!(s["last"]["event"], "marked-bad");
    assert!(s["last"]["detail"].as_str().unwrap().contains("20-broken"));
    // The next power-up boots the old slot, which is still proven.
    assert_eq!(w.reboot(|_| 1), Slot::A);
    assert_eq!(w.boot_state().attrs(Slot::A), attrs(1, 0, true));
    // A second health run on the proven slot changes nothing and does not reboot.
    std::fs::remove_file(&w.rebooted).unwrap();
    let before = w.gpt_bytes();
    w.run(&["health"]).expect(code::HEALTH);
    assert!(!w.rebooted.exists());
    assert_eq!(w.gpt_bytes(), before);
    // Installing the same release again finds its chunks in the slot: nothing is downloaded,
    // everything is still read back and checked before the slot is armed.
    let again = w.run(&["install"]);
    again.expect(code::OK);
    assert_eq!(again.result_field("fetched"), 0);
    assert_eq!(
        again.result_field("reused"),
        w.release(2).release.image.length
    );
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 3, false));
}

#[test]
fn a_hanging_health_check_is_killed_and_rejects_the_trial() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    std::fs::write(
        &w.config,
        std::fs::read_to_string(&w.config)
            .unwrap()
            .replace("timeout_secs = 10", "timeout_secs = 0.5"),
    )
    .unwrap();
    w.run(&["install"]).expect(code::OK);
    w.reboot(|s| if s == Slot::B { 2 } else { 1 });
    w.add_check("10-hang", "sleep 600");
    let run = w.run(&["health"]);
    run.expect(code::HEALTH);
    assert!(run.stderr.contains("killed after"), "{}", run.stderr);
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::A);
}

#[test]
fn mark_bad_by_hand_then_rollback_is_refused_without_a_bootable_target() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.run(&["install"]).expect(code::OK);
    w.reboot(|s| if s == Slot::B { 2 } else { 1 });
    w.run(&["mark-bad"]).expect(code::OK);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(0, 0, false));
    // b is not bootable: rollback to it is refused and changes nothing.
    let before = w.gpt_bytes();
    w.run(&["rollback"]).expect(code::STATE);
    assert_eq!(w.gpt_bytes(), before);
}

#[test]
fn second_install_while_a_trial_is_pending_is_refused() {
    let mut w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.run(&["install"]).expect(code::OK);
    w.publish(3, HARDWARE, 3 << 20);
    let before = w.gpt_bytes();
    let slot = w.slot_bytes(Slot::B);
    let run = w.run(&["install"]);
    run.expect(code::STATE);
    assert!(run.stderr.contains("trial pending"), "{}", run.stderr);
    assert_eq!(w.gpt_bytes(), before);
    assert_eq!(w.slot_bytes(Slot::B), slot);
}

#[test]
fn install_from_a_directory_with_from() {
    let w = World::new(Setup::default());
    // The configured mirror does not answer; --from points at the repository directory.
    let repo = w.repo.display().to_string();
    let run = w.run(&["install", "--from", &repo]);
    run.expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 3, false));
}

#[test]
fn downgrade_is_refused_unless_allowed() {
    let w = World::new(Setup {
        running: 3,
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    run.expect(code::ROLLBACK);
    assert!(run.stderr.contains("--allow-downgrade"), "{}", run.stderr);
    assert_eq!(w.gpt_bytes(), before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
    w.run(&["check"]).expect(code::ROLLBACK);

    w.run(&["install", "--allow-downgrade"]).expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}

/// The floor is the highest version ever committed: a manual rollback to an older slot does
/// not lower it, `--allow-downgrade` does not pass it, and only a release its publisher signed
/// as a rollback does (and sets the floor to itself when committed).
#[test]
fn the_floor_outlives_a_rollback_and_only_the_publisher_lowers_it() {
    let mut w = World::new(Setup {
        publish: vec![(1, HARDWARE), (2, HARDWARE), (4, HARDWARE)],
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    w.add_check("10-ok", "exit 0");
    let versions = |b: u64| move |s: Slot| if s == Slot::B { b } else { 1 };

    w.run(&["install"]).expect(code::OK);
    assert_eq!(w.reboot(versions(4)), Slot::B);
    w.run(&["health"]).expect(code::OK);
    assert_eq!(w.status_json()["floor"], 4);

    // By hand back to slot a, proven, running 1; the publisher withdraws 4.
    w.run(&["rollback"]).expect(code::OK);
    assert_eq!(w.reboot(versions(4)), Slot::A);
    w.withdraw(4);
    let before = w.gpt_bytes();
    let b_before = w.slot_bytes(Slot::B);
    for args in [
        &["install"][..],
        &["install", "--allow-downgrade"],
        &["check"],
    ] {
        let run = w.run(args);
        run.expect(code::ROLLBACK);
        assert!(
            run.stderr
                .contains("below this device's anti-rollback floor 4")
                && run.stderr.contains("--allow-rollback"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(w.gpt_bytes(), before, "nothing written");
    assert_eq!(w.slot_bytes(Slot::B), b_before);
    assert_eq!(w.status_json()["floor"], 4);

    // The publisher signs 3 as a deliberate rollback: installed without a device flag,
    // committed, and the floor follows it down.
    w.publish_with(
        3,
        1 << 20,
        AddOptions {
            allow_rollback: true,
            ..AddOptions::default()
        },
    );
    w.run(&["install"]).expect(code::OK);
    assert_eq!(w.reboot(versions(3)), Slot::B);
    w.run(&["health"]).expect(code::OK);
    assert_eq!(w.status_json()["floor"], 3);
    let text = w.run(&["status"]);
    assert!(
        text.stdout.contains("anti-rollback floor: 3"),
        "{}",
        text.stdout
    );
}

#[test]
fn other_hardware_id_is_incompatible() {
    let w = World::new(Setup {
        publish: vec![(1, "other-board"), (2, "other-board")],
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    run.expect(code::INCOMPATIBLE);
    assert!(
        run.stderr.contains("kiosk 2 for other-board in stable"),
        "{}",
        run.stderr
    );
    assert_eq!(w.gpt_bytes(), before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
    w.run(&["check"]).expect(code::INCOMPATIBLE);
}

#[test]
fn image_larger_than_the_slot_is_refused_before_writing() {
    let w = World::new(Setup {
        publish: vec![(2, HARDWARE)],
        slot_mib: 2,
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    run.expect(code::TOO_LARGE);
    assert!(run.stderr.contains("holds only"), "{}", run.stderr);
    assert_eq!(w.gpt_bytes(), before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn unknown_running_slot_is_refused() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    std::fs::write(&w.cmdline, "quiet root=/dev/vda2\n").unwrap();
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    run.expect(code::STATE);
    assert!(
        run.stderr.contains("cannot tell which slot is running"),
        "{}",
        run.stderr
    );
    assert_eq!(w.gpt_bytes(), before);
}

#[test]
fn running_slot_from_root_partuuid() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let partuuid = w.boot_state().slot(Slot::A).partition.partuuid;
    std::fs::write(
        &w.cmdline,
        format!("root=PARTUUID={} ro\n", partuuid.hyphenated()),
    )
    .unwrap();
    let s = w.status_json();
    assert_eq!(s["running"], "a");
    w.run(&["install"]).expect(code::OK);
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::B);
}

/// flipside-boot's volatile EFI variable wins over the command line, which a signed UKI may have
/// fixed at build time; a variable that holds garbage is refused, not guessed around.
#[test]
fn running_slot_from_the_firmware_variable_first() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    // The command line claims slot b; the firmware stage booted slot a.
    std::fs::write(&w.cmdline, "quiet flipside.slot=b\n").unwrap();
    let efivars = w.tmp.path().join("efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    let var = efivars.join(efivar::slot_variable_file_name());
    let mut bytes = efivar::SLOT_VARIABLE_ATTRIBUTES.to_le_bytes().to_vec();
    bytes.extend(efivar::encode_slot(Slot::A));
    std::fs::write(&var, &bytes).unwrap();
    assert_eq!(w.status_json()["running"], "a");
    w.run(&["install"]).expect(code::OK);
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::B);

    std::fs::write(&var, b"\x06\0\0\0q\0\0\0").unwrap();
    let before = w.gpt_bytes();
    let run = w.run(&["mark-good"]);
    run.expect(code::STATE);
    assert!(
        run.stderr.contains("does not hold slot a or b"),
        "{}",
        run.stderr
    );
    assert_eq!(w.gpt_bytes(), before);
}

#[test]
fn readback_by_dropping_the_page_cache_when_configured() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        text.replace("[device]\n", "[device]\nreadback = \"drop-cache\"\n"),
    )
    .unwrap();
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert_eq!(run.result_str("readback"), "Dropped");
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}

#[test]
fn install_onto_a_loop_device() {
    common::require_tool("losetup", "mount");
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&w.disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(loopdev.clone());
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("disk = \"disk.img\"", &format!("disk = {loopdev:?}"));
    std::fs::write(&w.config, text).unwrap();
    let run = w.run(&["install"]);
    run.expect(code::OK);
    drop(_detach);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 3, false));
}

#[test]
fn help_lists_the_exit_codes_and_bad_input_has_its_own() {
    let w = World::new(Setup {
        publish: vec![],
        ..Setup::default()
    });
    let help = w.run(&["--help"]);
    help.expect(code::OK);
    for line in [
        "Exit codes:",
        " 4  network",
        " 9  chunk-hash",
        "12  state",
        "13  health",
    ] {
        assert!(
            help.stdout.contains(line),
            "{line:?} missing from:\n{}",
            help.stdout
        );
    }
    w.run(&["install", "--bogus"]).expect(2);
    w.run(&["install", "--from", "ftp://example.com/repo"])
        .expect(2);
    let run = common::World::command(&w, &["status"])
        .arg("--config")
        .arg(w.tmp.path().join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(code::CONFIG));
}

/// The production binary, with the TUF client (`flipside_tuf::client`) over HTTP: the pinned
/// root must verify, then the same install works from nginx.
#[test]
fn production_binary_installs_through_the_tuf_client() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    w.write_config(&[nginx.url()], 3);
    let real = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flipside"))
            .arg("--config")
            .arg(&w.config)
            .args(args)
            .output()
            .unwrap();
        common::Run::from(out)
    };
    // A pinned root whose signature does not verify: a local configuration problem (exit 3),
    // named as the pinned root, not an attack on the repository.
    let root = w.tmp.path().join("root.json");
    let good = std::fs::read(&root).unwrap();
    let mut bad = good.clone();
    let at = bad.windows(5).position(|x| x == b"\"sig\"").unwrap() + 9;
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&root, &bad).unwrap();
    let refused = real(&["check"]);
    refused.expect(code::CONFIG);
    assert!(
        refused.stderr.contains("repository.trusted_root"),
        "{}",
        refused.stderr
    );
    std::fs::write(&root, &good).unwrap();
    std::fs::remove_dir_all(&w.state).ok();

    let check = real(&["check"]);
    check.expect(code::OK);
    assert!(
        check.stdout.contains("update available: kiosk 2"),
        "{}",
        check.stdout
    );
    let run = real(&["install"]);
    run.expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(2, 3, false));
    // The client keeps its trusted metadata in the state directory.
    assert!(w.state.join("metadata/root.json").is_file());
    assert!(run.result_field("copied") > 0);
}

#[test]
fn expired_metadata_is_refused_before_any_write() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    // Re-sign snapshot and timestamp as of ten days ago: the timestamp (1 day) has expired.
    let past = chrono::Utc::now() - chrono::Duration::days(10);
    // Without the record of the last publish, as a repository whose publisher's clock was
    // behind from the start: nothing betrays the clock, and the metadata goes out expired.
    std::fs::remove_file(w.repo.join(flipside_repository::layout::PUBLISHED_FILE)).unwrap();
    let mut repo = flipside_repository::Repository::open(&w.repo).unwrap();
    repo.resign(&flipside_repository::KeyDir::new(&w.keys), &[], past)
        .unwrap();
    drop(repo);
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    run.expect(code::EXPIRED);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    assert_eq!(w.gpt_bytes(), before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

/// Fail closed: `--allow-downgrade` only lifts the version rule. Metadata with a broken
/// signature and a bundle with changed bytes are refused as without it, and the boot
/// table is not touched.
#[test]
fn allowed_downgrade_still_verifies_signatures_and_chunks() {
    let w = World::new(Setup {
        running: 3,
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let before = w.gpt_bytes();

    let timestamp = w.repo.join("metadata/timestamp.json");
    let original = std::fs::read(&timestamp).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let sig = value["signatures"][0]["sig"].as_str().unwrap().to_string();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    value["signatures"][0]["sig"] = format!("{flipped}{}", &sig[1..]).into();
    std::fs::write(&timestamp, serde_json::to_vec(&value).unwrap()).unwrap();
    let run = w.run(&["install", "--allow-downgrade"]);
    run.expect(code::SIGNATURE);
    assert_eq!(w.gpt_bytes(), before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
    std::fs::write(&timestamp, &original).unwrap();

    let bundle = std::fs::read_dir(w.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".kiosk-2.bundle"))
        .expect("release 2's bundle in the repository");
    let mut bytes = std::fs::read(&bundle).unwrap();
    // Every chunk changed: some are copied from the running slot instead of fetched.
    for i in (0..bytes.len()).step_by(4096) {
        bytes[i] ^= 0x40;
    }
    std::fs::write(&bundle, &bytes).unwrap();
    let run = w.run(&["install", "--allow-downgrade"]);
    run.expect(code::CHUNK_HASH);
    assert_eq!(w.gpt_bytes(), before, "a refused image is never armed");
    assert_eq!(w.boot_state().boots_next().unwrap(), Slot::A);
}

/// The index of a published release, decoded.
fn index_of(w: &World, version: u64) -> flipside_contract::index::ChunkIndex {
    let (_, name) = flipside_contract::release::file_names(common::SYSTEM, version);
    let bytes = std::fs::read(w.release(version).dir.join(name)).unwrap();
    flipside_contract::index::ChunkIndex::decode(&bytes, &Default::default()).unwrap()
}

/// Slot b made writable again after an install armed it: unbootable, the sentinel bytes.
fn reset_b(w: &World) {
    w.set_attrs(Slot::B, attrs(0, 0, false));
    w.fill_slot(Slot::B, SENTINEL);
}

#[test]
fn the_running_slot_is_checked_whole_once_per_boot_unless_configured() {
    let w = World::new(Setup::default());
    let nginx = Nginx::start(&w.repo);
    w.write_config(&[nginx.url()], 3);
    let record = w.tmp.path().join("run/verified-a-root.json");
    let image = w.release(2).image_bytes();

    // The first delta of the boot reads slot a whole and records it.
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(run.result_field("copied") > 0, "{}", run.stdout);
    assert!(run.stdout.contains("phase=check-running"), "{}", run.stdout);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains(&hex::encode(index_of(&w, 1).image_sha256())),
        "{text}"
    );

    // A byte of a chunk the delta copies changes under the record (the record cannot know).
    let (new, old) = (index_of(&w, 2), index_of(&w, 1));
    let located = new.locate_in(&old);
    let from = located
        .iter()
        .flatten()
        .nth(located.len() / 4)
        .copied()
        .unwrap();
    w.damage_slot(Slot::A, from + 10, 1);

    // Configured to re-hash at every install: the damaged chunk is fetched instead.
    reset_b(&w);
    w.edit_config(
        "trial_boots = 3",
        "trial_boots = 3\nrunning_check = \"every-install\"",
    );
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(
        !run.stdout.contains("phase=check-running"),
        "{}",
        run.stdout
    );
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);

    // By default the record is trusted: copies are not re-hashed, so the damage reaches slot
    // b, the read-back refuses it before the slot is armed, and the record is dropped.
    reset_b(&w);
    w.edit_config("running_check = \"every-install\"", "");
    let run = w.run(&["install"]);
    run.expect(code::CHUNK_HASH);
    assert!(
        !run.stdout.contains("phase=check-running"),
        "{}",
        run.stdout
    );
    assert_eq!(w.boot_state().attrs(Slot::B), attrs(0, 0, false));
    assert!(!record.exists());

    // The next install checks slot a again, finds it changed, and checks each copy.
    reset_b(&w);
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("phase=check-running"), "{}", run.stdout);
    assert!(
        !record.exists(),
        "a slot that failed its check is not recorded"
    );
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
}
