//! A misbehaving server (the project's own, `flipside_test_support::server`): dropped
//! connections resume with Range requests; truncated, corrupted, over-long, missing and
//! trickling data is refused with its documented exit code, and the inactive slot is never
//! left bootable.

mod common;

use common::{code, Run, Setup, World, SENTINEL};
use flipside_bootloader_hooks::{BootAttrs, Slot};
use flipside_test_support::server::{Fault, Server};

/// A world without a delta (slot a does not hold release 1), so the whole bundle streams.
fn world() -> (World, Server) {
    let w = World::new(Setup {
        running_image: false,
        ..Setup::default()
    });
    let server = Server::start(&w.repo);
    w.write_config(&[server.url()], 3);
    (w, server)
}

/// After a refusal: slot b unbootable, slot a still boots, the table untouched.
fn assert_refused(w: &World, run: &Run, code: i32, gpt_before: &[u8]) {
    run.expect(code);
    let state = w.boot_state();
    assert_eq!(state.attrs(Slot::B), BootAttrs::new(0, 0, false).unwrap());
    assert_eq!(state.boots_next().unwrap(), Slot::A);
    assert_eq!(w.gpt_bytes(), gpt_before, "the GPT changed");
    let s: serde_json::Value = serde_json::from_str(&w.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["last"]["event"], "install-failed");
}

fn bundle_requests(server: &Server) -> Vec<Option<String>> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".bundle"))
        .map(|r| r.range)
        .collect()
}

#[test]
fn connection_cut_mid_stream_resumes_with_a_range_request() {
    let (w, server) = world();
    let bundle = w.release(2).release.bundle.length;
    server.set_fault(".bundle", Fault::CutOnce { after: bundle / 2 });
    let run = w.run(&["install"]);
    run.expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    let ranges = bundle_requests(&server);
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(
        ranges[0].as_deref(),
        Some(format!("bytes=0-{}", bundle - 1).as_str())
    );
    // The retry starts at the first chunk not yet written, past the start, at most where the
    // cut happened.
    let start: u64 = ranges[1]
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(start > 0 && start <= bundle / 2, "{ranges:?}");
    // Less than 1.5 bundles went over the wire.
    assert!(server.bytes_sent() < bundle + bundle / 2);
}

#[test]
fn truncated_body_every_time_is_a_network_error() {
    let (w, server) = world();
    server.set_fault(".bundle", Fault::CutAlways { after: 0 });
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::NETWORK, &before);
    assert!(run.stderr.contains("broke off"), "{}", run.stderr);
    // Bounded attempts: the first request and 3 retries.
    assert_eq!(bundle_requests(&server).len(), 4);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn corrupted_chunk_is_refused_before_it_is_written() {
    let (w, server) = world();
    let built = w.release(2).clone();
    let index = flipside_contract::index::ChunkIndex::decode(
        &std::fs::read(built.dir.join(&built.release.index.name)).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let victim = index.entries()[index.len() / 2];
    server.set_fault(
        ".bundle",
        Fault::Corrupt {
            offset: victim.frame_offset + victim.frame_length / 2,
        },
    );
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::CHUNK_HASH, &before);
    // The bad chunk never reached the slot (chunks verified concurrently with it may have).
    let slot = w.slot_bytes(Slot::B);
    let range = victim.image_range();
    assert!(slot[range.start as usize..range.end as usize]
        .iter()
        .all(|&b| b == SENTINEL));
}

#[test]
fn bundle_longer_than_signed_is_refused() {
    let (w, server) = world();
    server.set_fault(".bundle", Fault::Longer { extra: 100 });
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::CHUNK_HASH, &before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn corrupted_index_is_refused_before_any_write() {
    let (w, server) = world();
    let index_len = w.release(2).release.index.length;
    server.set_fault(
        ".index",
        Fault::Corrupt {
            offset: index_len - 1,
        },
    );
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::CHUNK_HASH, &before);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn missing_index_and_failing_bundle_server_are_network_errors() {
    let (w, server) = world();
    server.set_fault(".index", Fault::Status(404));
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::NETWORK, &before);
    assert!(
        run.stderr.contains("is not in the repository"),
        "{}",
        run.stderr
    );

    server.set_fault(".bundle", Fault::Status(500));
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::NETWORK, &before);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    assert!(w.slot_bytes(Slot::B).iter().all(|&b| b == SENTINEL));
}

#[test]
fn trickling_server_ends_with_the_low_speed_limit() {
    let (w, server) = world();
    w.write_config(&[server.url()], 1);
    server.set_fault(".bundle", Fault::Trickle);
    let before = w.gpt_bytes();
    let run = w.run(&["install"]);
    assert_refused(&w, &run, code::NETWORK, &before);
    assert!(run.stderr.contains("too slow"), "{}", run.stderr);
}

#[test]
fn a_failing_mirror_falls_back_to_the_next() {
    let (w, server) = world();
    let good = Server::start(&w.repo);
    server.set_fault(".bundle", Fault::Status(404));
    w.write_config(&[server.url(), good.url()], 3);
    w.run(&["install"]).expect(code::OK);
    let image = w.release(2).image_bytes();
    assert_eq!(w.read_slot(Slot::B, image.len() as u64), image);
    assert!(good.bytes_sent() >= w.release(2).release.bundle.length);
}

/// A server that answers Range requests with the whole file: once seen, every chunk still
/// missing comes from one more request instead of one request per range (each of which would
/// send the file from its start again).
#[test]
fn a_server_ignoring_range_is_asked_once_more_not_once_per_range() {
    let (w, server) = world();
    w.run(&["install"]).expect(code::OK);
    let image = w.release(2).image_bytes();
    let len = image.len() as u64;
    // An interrupted install of the same image: slot b unbootable, damaged in four places far
    // apart, so that the resume needs four ranges.
    let interrupt = || {
        w.set_attrs(Slot::A, BootAttrs::new(2, 0, true).unwrap());
        w.set_attrs(Slot::B, BootAttrs::new(0, 0, false).unwrap());
        for k in 1..=4 {
            w.damage_slot(Slot::B, len * k / 5, 4096);
        }
    };

    interrupt();
    server.reset_count();
    w.run(&["install"]).expect(code::OK);
    let honest = bundle_requests(&server);
    assert!(
        honest.len() >= 4,
        "the setup needs several ranges: {honest:?}"
    );
    assert!(honest.iter().all(Option::is_some));

    interrupt();
    server.set_fault(".bundle", Fault::IgnoreRange);
    server.reset_count();
    let run = w.run(&["install"]);
    run.expect(code::OK);
    assert_eq!(w.read_slot(Slot::B, len), image);
    let asked = bundle_requests(&server);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        run.stderr
            .contains("answers Range requests with the whole file"),
        "{}",
        run.stderr
    );
}
