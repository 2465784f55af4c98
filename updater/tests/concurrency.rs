//! Two commands against one device, through the real binary: while an install streams (a slow
//! server keeps it busy), every other state-changing command is refused at once (exit 12, the
//! holder named) and changes nothing, and the install completes as if alone; boot bits changed
//! under an install by another writer are never overwritten by its arming.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{code, Setup, World};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_test_support::server::{Fault, Server};

/// Starts `install` against a server that sends the bundle at a tenth of its size per second,
/// and returns once part of it has been streamed (the slot is cleared and being written).
fn slow_install(w: &World, server: &Server) -> Child {
    let bundle = w.release(2).release.bundle.length;
    server.set_fault(
        ".bundle",
        Fault::Throttle {
            bytes_per_sec: bundle / 10,
        },
    );
    let mut child = w
        .command(&["install"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while server.bytes_sent() < bundle / 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the install ended early"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn world() -> World {
    World::new(Setup {
        running_image: false,
        ..Setup::default()
    })
}

#[test]
fn other_commands_are_refused_while_an_install_streams_and_it_completes_alone() {
    let w = world();
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let first = slow_install(&w, &server);

    let gpt = w.gpt_bytes();
    let repo = w.repo.to_str().unwrap().to_string();
    for args in [
        vec!["install", "--from", repo.as_str()],
        vec!["install"],
        vec!["mark-bad"],
        vec!["rollback"],
        vec!["health"],
    ] {
        let run = w.run(&args);
        run.expect(code::STATE);
        assert!(
            run.stderr
                .contains(&format!("another flipside command (pid {})", first.id())),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(w.gpt_bytes(), gpt, "{args:?} changed the table");
    }
    // Reading is never locked out.
    w.run(&["status"]).expect(code::OK);

    server.set_fault(".bundle", Fault::None);
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = w.release(2).image_bytes();
    assert!(w.read_slot(Slot::B, image.len() as u64) == image);
    assert_eq!(
        w.boot_state().attrs(Slot::B),
        BootAttrs::new(2, 3, false).unwrap()
    );
    // The lock went with the process: the next command runs.
    w.run(&["install"]).expect(code::STATE); // a trial is pending now, not a lock
}

#[test]
fn bits_changed_under_an_install_are_not_overwritten_by_its_arming() {
    let w = world();
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    let first = slow_install(&w, &server);

    // Another writer (a person with cgpt, a tool that ignores the lock) sets slot b's bits.
    let theirs = BootAttrs::new(1, 0, true).unwrap();
    w.set_attrs(Slot::B, theirs);
    server.set_fault(".bundle", Fault::None);
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::STATE), "{stderr}");
    assert!(stderr.contains("changed under this command"), "{stderr}");
    assert_eq!(w.boot_state().attrs(Slot::B), theirs);
}
