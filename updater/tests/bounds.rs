//! Inputs the configuration points at are bounded, and a value past a bound is refused with
//! its field named (exit 3) instead of being waited on or read for ages: the pinned root is
//! read up to the cap of root metadata, the download backoff is at most 5 minutes. (The reboot
//! command's timeout and the check runner's are unit-tested in `src/health.rs`.)

mod common;

use common::{code, Setup, World};

#[test]
fn an_oversized_pinned_root_is_refused_at_the_cap_of_root_metadata() {
    let w = World::new(Setup::nothing_published());
    // Bigger than any root metadata may be (512,000 bytes): read up to the cap, then refused.
    std::fs::write(w.tmp.path().join("root.json"), vec![b' '; 600_000]).unwrap();
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    assert!(
        run.stderr.contains("larger than the cap of 512000 bytes")
            && run.stderr.contains("repository.trusted_root"),
        "{}",
        run.stderr
    );
    assert!(!w.state.join("metadata").exists(), "the store was created");
}

#[test]
fn a_backoff_of_ages_is_refused() {
    let w = World::new(Setup::nothing_published());
    w.edit_config(
        "backoff_max_ms = 100",
        "backoff_max_ms = 9223372036854775807",
    );
    let run = w.run(&["check"]);
    run.expect(code::CONFIG);
    assert!(
        run.stderr.contains("network.backoff_max_ms") && run.stderr.contains("5 minutes"),
        "{}",
        run.stderr
    );
}
