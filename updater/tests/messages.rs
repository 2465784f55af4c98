//! What a person reads when something local is wrong: each message names the thing at fault
//! and the exit code is that of its class (updater/README.md), through the `flipside` binary.

mod common;

use std::net::TcpListener;

use chrono::Utc;
use common::{code, Setup, World, HARDWARE};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_repository::{InitSettings, KeyDir, Repository};
use flipside_test_support::server::Server;

#[test]
fn a_missing_pinned_root_is_named_not_the_configuration() {
    let w = World::new(Setup::nothing_published());
    std::fs::remove_file(w.tmp.path().join("root.json")).unwrap();
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    assert!(
        run.stderr.contains("cannot read the pinned root metadata")
            && run.stderr.contains("repository.trusted_root")
            && !run.stderr.contains("cannot read the configuration"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_garbage_pinned_root_is_a_configuration_error_naming_the_pinned_file() {
    let w = World::new(Setup::nothing_published());
    let pinned = w.tmp.path().join("root.json");
    std::fs::write(&pinned, "garbage").unwrap();
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    assert!(
        run.stderr
            .contains(&format!("pinned root metadata {}", pinned.display()))
            && !run.stderr.contains("metadata/root.json"),
        "{}",
        run.stderr
    );
    assert!(!w.state.join("metadata").exists());
}

#[test]
fn a_wrongly_pinned_root_is_named_after_the_configuration_is_fixed() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 1);
    // The first run pins the root of another repository (other keys).
    let other = w.tmp.path().join("other");
    let mut r = Repository::create(&other.join("repo")).unwrap();
    r.init(
        &KeyDir::new(other.join("keys")),
        &InitSettings::default(),
        Utc::now(),
    )
    .unwrap();
    let pinned = w.tmp.path().join("root.json");
    let right = std::fs::read(&pinned).unwrap();
    std::fs::copy(other.join("repo/metadata/1.root.json"), &pinned).unwrap();
    let run = w.run(&["check"]);
    run.expect(code::SIGNATURE);
    // The configuration is fixed; the stored root is still the wrong one, and says so.
    std::fs::write(&pinned, &right).unwrap();
    let run = w.run(&["check"]);
    run.expect(code::SIGNATURE);
    let store = w.state.join("metadata");
    assert!(
        run.stderr.contains(&format!(
            "stored root {}",
            store.join("root.json").display()
        )) && run.stderr.contains(&format!("remove {}", store.display())),
        "{}",
        run.stderr
    );
    // Doing what it says works.
    std::fs::remove_dir_all(&store).unwrap();
    w.run(&["check"]).expect(code::OK);
    // A stored root equal to the pinned one is never blamed.
    let run = w.run(&["check"]);
    run.expect(code::OK);
    assert!(!run.stderr.contains("stored root"), "{}", run.stderr);
}

#[test]
fn a_missing_disk_names_device_disk() {
    let w = World::new(Setup::nothing_published());
    std::fs::remove_file(&w.disk).unwrap();
    let run = w.run(&["status"]);
    run.expect(code::CONFIG);
    assert!(
        run.stderr
            .contains(&format!("cannot open the disk {}", w.disk.display()))
            && run.stderr.contains("device.disk")
            && !run.stderr.contains("offset 0"),
        "{}",
        run.stderr
    );
}

#[test]
fn network_errors_tell_refused_from_timed_out() {
    let w = World::new(Setup::nothing_published());
    // Bound, then closed: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    w.write_config(&[format!("http://127.0.0.1:{port}/")], 0);
    let run = w.run(&["check"]);
    run.expect(code::NETWORK);
    assert!(
        run.stderr.contains("connection refused") && !run.stderr.contains("timed out"),
        "{}",
        run.stderr
    );
    // Listening (the kernel accepts the connection) but never answering.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    w.write_config(&[format!("http://127.0.0.1:{port}/")], 0);
    w.edit_config("read_timeout_secs = 5", "read_timeout_secs = 0.5");
    let run = w.run(&["check"]);
    run.expect(code::NETWORK);
    assert!(
        run.stderr.contains("timed out") && !run.stderr.contains("connection refused"),
        "{}",
        run.stderr
    );
}

#[test]
fn status_during_a_trial_does_not_ask_for_a_reboot() {
    let w = World::new(Setup::nothing_published());
    w.set_attrs(Slot::A, BootAttrs::new(1, 0, true).unwrap());
    w.set_attrs(Slot::B, BootAttrs::new(2, 3, false).unwrap());
    // Armed, not yet booted: reboot to try it.
    let run = w.run(&["status"]);
    run.expect(code::OK);
    assert!(run.stdout.contains("reboot to try"), "{}", run.stdout);
    // Booted into the trial: it is under way.
    w.set_running(Slot::B, 2, HARDWARE);
    let run = w.run(&["status"]);
    run.expect(code::OK);
    assert!(
        !run.stdout.contains("reboot to try") && run.stdout.contains("on trial"),
        "{}",
        run.stdout
    );
}

#[test]
fn corrupt_state_files_are_shown_with_a_warning() {
    let w = World::new(Setup::nothing_published());
    std::fs::create_dir_all(&w.state).unwrap();
    std::fs::write(w.state.join("slot-b.json"), "{ not json").unwrap();
    std::fs::write(
        w.state.join("install.json"),
        r#"{"slot":"z","bundle_target":"kiosk-2.bundle","version":2,"image_sha256":"00","started":"2026-12-03T00:00:00Z"}"#,
    )
    .unwrap();
    let run = w.run(&["status"]);
    run.expect(code::OK);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", run.stdout);
    assert!(
        warnings[0].contains("slot-b.json is corrupt"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("install.json is corrupt")
            && warnings[1].contains("slot \"z\", which is neither a nor b"),
        "{warnings:?}"
    );
    assert!(!run.stdout.contains("unfinished install"), "{}", run.stdout);
    assert_eq!(
        w.status_json()["warnings"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn a_corrupt_index_is_named_and_its_bytes_are_not_printed() {
    let w = World::new(Setup::default());
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 1);
    // The running slot's stored index points at a file that is not an index.
    let secret = w.tmp.path().join("secret");
    std::fs::write(&secret, "SECRET!!and more").unwrap();
    std::fs::create_dir_all(&w.state).unwrap();
    std::os::unix::fs::symlink(&secret, w.state.join("slot-a.index")).unwrap();
    let run = w.run(&["install"]);
    run.expect(code::OK);
    let shown = format!("{:02x?}", b"SECRET!!");
    assert!(
        run.stderr.contains(&format!(
            "index {} is unusable",
            w.state.join("slot-a.index").display()
        )) && !run.stderr.contains(&shown),
        "{}",
        run.stderr
    );
}
