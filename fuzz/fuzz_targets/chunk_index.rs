#![no_main]
//! `cargo fuzz run chunk_index`: see `flipside_fuzz::harness::chunk_index`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flipside_fuzz::harness::chunk_index(data));
