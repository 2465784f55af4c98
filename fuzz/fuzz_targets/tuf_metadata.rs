#![no_main]
//! `cargo fuzz run tuf_metadata`: see `flipside_fuzz::harness::tuf_metadata`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flipside_fuzz::harness::tuf_metadata(data));
