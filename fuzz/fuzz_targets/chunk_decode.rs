#![no_main]
//! `cargo fuzz run chunk_decode`: see `flipside_fuzz::harness::chunk_decode`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flipside_fuzz::harness::chunk_decode(data));
